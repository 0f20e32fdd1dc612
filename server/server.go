package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/sampler"
)

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	// Env resolves every spec; the server shares it between requests (models and rewards are
	// opened once) and does not close it.
	Env *generation.Env
	// APIKey, when set, is required as "Authorization: Bearer <key>" on every route but /healthz.
	APIKey string
	// AllowPaths are the folders whose files a request may name as a model, a reward's model or
	// reference, or a preview decoder; otherwise a request names only configured models (Env.Models),
	// catalog models, the built-in one, and configured rewards (Rewards).
	AllowPaths []string
	// Rewards maps reward names a request may use to reward specs.
	Rewards map[string]string
	// QueueSize bounds the jobs waiting to run (default 16); a request beyond it gets 429.
	QueueSize int
	// Workers is how many jobs run at once (default 1), PerModel how many of them may use one
	// model at once (default 1): a model's session runs one batch well, several share its cores.
	Workers, PerModel int
	// Limits bound every request.
	Limits Limits
	// JobTimeout ends a job that runs longer (default 30 minutes).
	JobTimeout time.Duration
	// KeepJobs is how many finished jobs are kept for polling (default 64), each with its images
	// and its events (every evaluation's particle previews: a page opened late still draws them).
	KeepJobs int
	// Log receives one line per job and per failure (nil: discarded).
	Log *slog.Logger
}

// Limits bound what one request may ask for. The server answers 400 (413 for the body) naming
// the limit; the defaults suit a workstation.
type Limits struct {
	BodyBytes int64 // request body (default 64 MiB: a batch of 64 reward images)
	Images    int   // images per request: n, batch_size × n_iter (default 16)
	Particles int   // K (default 64)
	Steps     int   // default 200
	Scores    int   // images per reward request (default 256)
}

func (c *Config) defaults() {
	orDefault(&c.QueueSize, 16)
	orDefault(&c.Workers, 1)
	orDefault(&c.PerModel, 1)
	orDefault(&c.JobTimeout, 30*time.Minute)
	orDefault(&c.KeepJobs, 64)
	l := &c.Limits
	orDefault(&l.BodyBytes, 64<<20)
	orDefault(&l.Images, 16)
	orDefault(&l.Particles, 64)
	orDefault(&l.Steps, 200)
	orDefault(&l.Scores, 256)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	for i, p := range c.AllowPaths {
		if abs, err := filepath.Abs(p); err == nil {
			c.AllowPaths[i] = abs
		}
	}
}

// orDefault sets a zero or negative setting to its default.
func orDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Server serves fksteer over HTTP: the OpenAI images API, the AUTOMATIC1111 API, async jobs
// with Server-Sent Events, a reward server and a web page. Create it with New, serve Handler,
// and Close it to stop.
type Server struct {
	cfg   Config
	queue chan *Job
	ctx   context.Context // cancelled by Close: running jobs stop
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu     sync.Mutex
	jobs   map[string]*Job
	order  []string // finished jobs, oldest first, for eviction
	models map[string]chan struct{}
	temps  map[string]bool // init images written for img2img requests
	// a1111Model is the model AUTOMATIC1111 requests default to ("": glyphs).
	a1111Model string
	closed     bool
	running    int
	metrics    metrics
	started    time.Time
}

// New starts a server's workers. It fails only on a configuration it cannot serve.
func New(cfg Config) (*Server, error) {
	if cfg.Env == nil {
		return nil, errors.New("server: Config.Env is required")
	}
	cfg.defaults()
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, queue: make(chan *Job, cfg.QueueSize), ctx: ctx, stop: stop,
		jobs: map[string]*Job{}, models: map[string]chan struct{}{}, temps: map[string]bool{}, started: time.Now()}
	for range cfg.Workers {
		s.wg.Add(1)
		go s.worker()
	}
	return s, nil
}

// Close stops the server: no job is accepted any more, and the jobs already accepted (running
// or queued) may finish until ctx is done, when what remains is cancelled. Every job ends with
// its state recorded (finished images are whole: a job writes nothing until its images exist).
// Close returns ctx's error if it had to cancel jobs.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.queue)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.stop()
		return nil
	case <-ctx.Done():
		s.stop()
		<-done
		return ctx.Err()
	}
}

// submit queues a job for spec after checking it, or fails with an *apiError.
func (s *Server) submit(spec generation.Spec) (*Job, error) {
	if err := s.check(&spec); err != nil {
		return nil, err
	}
	j := &Job{ID: newJobID(), Status: Queued, Spec: spec, Created: time.Now(), done: make(chan struct{})}
	j.PollURL = "/v1/jobs/" + j.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, &apiError{status: http.StatusServiceUnavailable, typ: "server_error", msg: "the server is shutting down"}
	}
	select {
	case s.queue <- j:
	default:
		s.metrics.rejected++
		return nil, &apiError{status: http.StatusTooManyRequests, typ: "rate_limit_error", code: "queue_full",
			msg: fmt.Sprintf("%v (%d jobs wait): retry later", errQueueFull, s.cfg.QueueSize), retryAfter: 5}
	}
	s.jobs[j.ID] = j
	return j, nil
}

// job returns the job with this id, or nil.
func (s *Server) job(id string) *Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[id]
}

func (s *Server) worker() {
	defer s.wg.Done()
	for j := range s.queue {
		s.run(j)
	}
}

// modelSlot is the semaphore of a model: PerModel jobs may use it at once.
func (s *Server) modelSlot(model string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if model == "" {
		model = generation.DefaultModel
	}
	ch, ok := s.models[model]
	if !ok {
		ch = make(chan struct{}, s.cfg.PerModel)
		s.models[model] = ch
	}
	return ch
}

// run runs one job to its end and records it.
func (s *Server) run(j *Job) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.JobTimeout)
	defer cancel()
	j.mu.Lock()
	if j.Status == Cancelled { // cancelled while queued
		j.mu.Unlock()
		s.mu.Lock()
		s.order = append(s.order, j.ID)
		s.mu.Unlock()
		return
	}
	j.cancel = cancel
	j.mu.Unlock()
	slot := s.modelSlot(j.Spec.Model)
	select {
	case slot <- struct{}{}:
	case <-ctx.Done():
		s.finish(j, nil, nil, ctx.Err())
		return
	}
	defer func() { <-slot }()
	now := time.Now()
	j.mu.Lock()
	j.Status, j.Started = Running, &now
	j.mu.Unlock()
	s.mu.Lock()
	s.running++
	s.mu.Unlock()
	res, images, err := s.sample(ctx, j)
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	s.finish(j, res, images, err)
}

// sample resolves the job's spec and samples all its images, encoded as PNGs.
func (s *Server) sample(ctx context.Context, j *Job) (*generation.Result, [][]byte, error) {
	run, err := s.cfg.Env.Prepare(ctx, j.Spec)
	if err != nil {
		return nil, nil, err
	}
	defer run.Close() // the model may be closed to make room once no job uses it
	res, err := run.Sample(ctx, 0, run.Spec.Images, j.observe)
	if err != nil {
		return nil, nil, err
	}
	images := make([][]byte, len(res.Outputs))
	for i := range res.Outputs {
		if images[i], err = res.PNG(i); err != nil {
			return nil, nil, err
		}
	}
	return res, images, nil
}

// finish records a job's end (its images are set under the job's lock: image requests read
// them), publishes it and forgets the oldest finished jobs.
func (s *Server) finish(j *Job, res *generation.Result, images [][]byte, err error) {
	now := time.Now()
	j.mu.Lock()
	j.Finished = &now
	switch {
	case err == nil:
		j.Status, j.images = Succeeded, images
		for i, o := range res.Outputs {
			out := Output{Seed: o.Seed, Particle: o.Particle, URL: fmt.Sprintf("/v1/jobs/%s/images/%d.png", j.ID, i),
				Parameters: res.Run.Parameters(res.Config, o)}
			if r := o.Reward; r == r { // not NaN
				out.Reward = &r
			}
			j.Outputs = append(j.Outputs, out)
		}
	case j.cancels || errors.Is(err, context.Canceled):
		j.Status, j.Error = Cancelled, "cancelled"
		if !j.cancels {
			j.Error = "cancelled: the server is shutting down, or the client went away"
		}
	default:
		j.Status, j.Error, j.err = Failed, err.Error(), err
		if errors.Is(err, context.DeadlineExceeded) {
			j.Error = fmt.Sprintf("the job ran longer than the server's limit of %s", s.cfg.JobTimeout)
		}
	}
	end := Event{Type: "done", Status: j.Status, Error: j.Error, Outputs: j.Outputs}
	created, status := j.Created, j.Status
	j.mu.Unlock()
	j.publish(end)
	j.mu.Lock()
	close(j.done)
	for ch := range j.subs {
		close(ch)
	}
	j.subs = nil
	j.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.metrics.record(status, now.Sub(created), nfe(j, res))
	s.order = append(s.order, j.ID)
	for len(s.order) > s.cfg.KeepJobs {
		delete(s.jobs, s.order[0])
		s.order = s.order[1:]
	}
	s.cfg.Log.Info("job", "id", j.ID, "status", status, "seconds", now.Sub(created).Seconds(), "error", j.Error)
}

// nfe is the denoiser rows a finished job evaluated, as the engine counted them (a guided row
// counts 2).
func nfe(j *Job, res *generation.Result) float64 {
	if res == nil {
		return 0
	}
	return float64(res.Stats.NFE)
}

// cancelJob cancels a queued or running job; it reports false for one that has ended.
func (s *Server) cancelJob(j *Job) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch j.Status {
	case Queued:
		j.Status, j.cancels = Cancelled, true
		j.Error = "cancelled"
		now := time.Now()
		j.Finished = &now
		close(j.done)
		for ch := range j.subs {
			close(ch)
		}
		j.subs = nil
		return true
	case Running:
		j.cancels = true
		if j.cancel != nil {
			j.cancel()
		}
		return true
	}
	return false
}

// check refuses a spec over the limits or naming a file outside the allowed folders, and
// replaces a configured reward's name by its spec.
func (s *Server) check(spec *generation.Spec) error {
	l := s.cfg.Limits
	switch {
	case spec.Images > l.Images:
		return badRequest("n", "%d images is over this server's limit of %d per request", spec.Images, l.Images)
	case spec.Particles > l.Particles:
		return badRequest("particles", "%d particles is over this server's limit of %d", spec.Particles, l.Particles)
	case spec.Steps > l.Steps:
		return badRequest("steps", "%d steps is over this server's limit of %d", spec.Steps, l.Steps)
	}
	if err := s.checkModel(spec.Model); err != nil {
		return err
	}
	for _, f := range []struct{ param, path string }{{"preview-decoder", spec.PreviewDecoder}} {
		if f.path != "" && !s.allowed(f.path) {
			return forbiddenPath(f.param, f.path)
		}
	}
	if p := spec.InitImage; p != "" && !s.allowed(p) && !s.isTemp(p) {
		return forbiddenPath("init-image", p)
	}
	for _, ref := range spec.References {
		if !s.allowed(ref) {
			return forbiddenPath("references", ref)
		}
	}
	if spec.Reward != "" {
		r, err := s.rewardSpec(spec.Reward)
		if err != nil {
			return err
		}
		spec.Reward = r
	}
	return nil
}

// checkModel allows the built-in model, configured and catalog names, and files under an
// allowed folder.
func (s *Server) checkModel(model string) error {
	if model == "" || model == generation.DefaultModel {
		return nil
	}
	if _, ok := s.cfg.Env.Models[strings.ToLower(model)]; ok {
		return nil
	}
	if !strings.ContainsAny(model, `/\`) && !strings.HasSuffix(model, ".yaml") && !strings.HasSuffix(model, ".yml") {
		return nil // a name: Env resolves it among the catalog's, or refuses it
	}
	if s.allowed(model) {
		return nil
	}
	return forbiddenPath("model", model)
}

// rewardSpec resolves a request's reward: a configured name, or a spec whose every file is
// under an allowed folder.
func (s *Server) rewardSpec(r string) (string, error) {
	if spec, ok := s.cfg.Rewards[r]; ok {
		return spec, nil
	}
	for _, v := range specPaths(r) {
		if !s.allowed(v) {
			return "", forbiddenPath("reward", v)
		}
	}
	return r, nil
}

// specPaths are the values of a reward spec that look like files: every value holding a path
// separator or a file extension rewards read (models, reference images, label files).
func specPaths(spec string) []string {
	var out []string
	for _, term := range strings.FieldsFunc(spec, func(r rune) bool { return r == '+' || r == ',' || r == ';' }) {
		_, v, ok := strings.Cut(term, "=")
		if !ok {
			continue
		}
		for _, p := range strings.Split(v, "|") {
			ext := strings.ToLower(filepath.Ext(p))
			if strings.ContainsAny(p, `/\`) || ext == ".onnx" || ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".webp" || ext == ".txt" || ext == ".json" {
				out = append(out, p)
			}
		}
	}
	return out
}

// allowed reports whether path lies inside one of the allowed folders, after resolving "..".
func (s *Server) allowed(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	abs = realPath(abs)
	for _, dir := range s.cfg.AllowPaths {
		dir = realPath(dir)
		if rel, err := filepath.Rel(dir, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// realPath resolves the symbolic links of the longest part of an absolute path that exists, so
// that a link inside an allowed folder cannot point a file that does not exist yet outside it.
func realPath(abs string) string {
	rest := ""
	for p := abs; ; p = filepath.Dir(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(real, rest)
		}
		if filepath.Dir(p) == p {
			return abs
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}

// Handler is the server's HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	mux.HandleFunc("POST /v1/images/generations", s.openAIGenerate)
	mux.HandleFunc("GET /v1/models", s.openAIModels)
	mux.HandleFunc("POST /v1/jobs", s.createJob)
	mux.HandleFunc("GET /v1/jobs/{id}", s.getJob)
	mux.HandleFunc("GET /v1/jobs/{id}/events", s.jobEvents)
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", s.cancel)
	mux.HandleFunc("GET /v1/jobs/{id}/images/{file}", s.jobImage)
	mux.HandleFunc("POST /v1/rewards/score", s.score)
	mux.HandleFunc("POST /sdapi/v1/txt2img", s.a1111Generate)
	mux.HandleFunc("POST /sdapi/v1/img2img", s.a1111Generate)
	mux.HandleFunc("GET /sdapi/v1/sd-models", s.a1111Models)
	mux.HandleFunc("GET /sdapi/v1/samplers", s.a1111Samplers)
	mux.HandleFunc("GET /sdapi/v1/schedulers", s.a1111Schedulers)
	mux.HandleFunc("GET /sdapi/v1/progress", s.a1111Progress)
	mux.HandleFunc("GET /sdapi/v1/options", s.a1111Options)
	mux.HandleFunc("POST /sdapi/v1/options", s.a1111Options)
	mux.HandleFunc("GET /{$}", serveIndex)
	return s.guard(mux)
}

// guard checks the API key and bounds the request body.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.APIKey != "" && r.URL.Path != "/healthz" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.APIKey)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="fksteer"`)
				writeError(w, &apiError{status: http.StatusUnauthorized, typ: "invalid_request_error", code: "invalid_api_key",
					msg: "missing or wrong API key: send Authorization: Bearer <key>"})
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.Limits.BodyBytes)
		next.ServeHTTP(w, r)
	})
}

// apiError is an error answered in OpenAI's shape: {"error": {message, type, param, code}}.
type apiError struct {
	status     int
	typ, param string
	code, msg  string
	retryAfter int
}

func (e *apiError) Error() string { return e.msg }

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, msg: fmt.Sprintf(format, args...)}
}

func forbiddenPath(param, path string) *apiError {
	return &apiError{status: http.StatusForbidden, typ: "invalid_request_error", param: param, code: "path_not_allowed",
		msg: fmt.Sprintf("%s names %q, outside the folders this server allows (--allow-path) and not a configured name", param, path)}
}

// asAPIError maps an error to its answer: a request the client must change is 400, a body over
// the limit 413, the rest 500.
func asAPIError(err error) *apiError {
	var ae *apiError
	var se *generation.SpecError
	var ce *sampler.ConfigError
	var mb *http.MaxBytesError
	var um *generation.UnknownModelError
	var pe *fs.PathError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mb):
		return &apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error",
			msg: fmt.Sprintf("the request body is over this server's limit of %d bytes", mb.Limit)}
	case errors.As(err, &um):
		return &apiError{status: http.StatusNotFound, typ: "invalid_request_error", param: "model", code: "model_not_found", msg: err.Error()}
	case errors.As(err, &se), errors.As(err, &ce):
		return badRequest("", "%v", err)
	case errors.As(err, &pe):
		// A file the request named (a reward's model, a reference) that cannot be read.
		return badRequest("", "%v", err)
	}
	return &apiError{status: http.StatusInternalServerError, typ: "server_error", msg: err.Error()}
}

func writeError(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(ae.retryAfter))
	}
	body := map[string]any{"error": map[string]any{"message": ae.msg, "type": ae.typ, "param": nullable(ae.param), "code": nullable(ae.code)}}
	writeJSON(w, ae.status, body)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do then
}

// decodeJSON reads a request body into v, refusing unknown fields where strict.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return badRequest("", "the request body is not the JSON this route takes: %v", err)
	}
	return nil
}

// wait waits for a job a synchronous request submitted; a client that goes away cancels it.
func (s *Server) wait(r *http.Request, j *Job) error {
	select {
	case <-j.Done():
	case <-r.Context().Done():
		s.cancelJob(j)
		<-j.Done()
		return r.Context().Err()
	}
	snap := j.Snapshot()
	switch snap.Status {
	case Succeeded:
		return nil
	case Failed:
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.err
	}
	return &apiError{status: http.StatusServiceUnavailable, typ: "server_error", msg: snap.Error}
}

func (s *Server) isTemp(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.temps[path]
}
