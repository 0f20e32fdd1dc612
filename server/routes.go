package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// extraKey is the request field holding fksteer's own settings (a generation.Spec's keys) in
// the OpenAI and AUTOMATIC1111 routes; OpenAI's SDKs send it through their extra-body option.
const extraKey = "fksteer"

// specOf reads fksteer's extra settings of a request into a spec.
func specOf(extra json.RawMessage) (generation.Spec, error) {
	if len(extra) == 0 || string(extra) == "null" {
		return generation.Spec{}, nil
	}
	s, err := generation.DecodeSpec(extra)
	if err != nil {
		return s, badRequest(extraKey, "%s: %v", extraKey, err)
	}
	return s, nil
}

// withSize applies a requested image size: a model's own size is no change, any other size is
// a Stable Diffusion option (Env.Prepare refuses it, naming why, for other models).
func (s *Server) withSize(spec *generation.Spec, w, h int) error {
	if w == 0 && h == 0 {
		return nil
	}
	probe := *spec
	probe.Width, probe.Height = 0, 0
	p, err := s.cfg.Env.Model(probe)
	if err != nil {
		return err
	}
	if info := p.Info(); info.ImageWidth == w && info.ImageHeight == h {
		return nil
	}
	spec.Width, spec.Height = w, h
	return nil
}

// parseSize reads OpenAI's "WxH" ("auto" or empty: the model's size).
func parseSize(size string) (int, int, error) {
	if size == "" || size == "auto" {
		return 0, 0, nil
	}
	ws, hs, ok := strings.Cut(size, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return 0, 0, badRequest("size", "size %q is not WIDTHxHEIGHT (e.g. 512x512) or auto", size)
	}
	return w, h, nil
}

// openAIRequest is OpenAI's image generation request; fields fksteer has no use for (quality,
// style, background) are accepted and ignored, as other OpenAI-compatible servers do.
type openAIRequest struct {
	Prompt         string          `json:"prompt"`
	Model          string          `json:"model"`
	N              *int            `json:"n"`
	Size           string          `json:"size"`
	ResponseFormat string          `json:"response_format"`
	OutputFormat   string          `json:"output_format"`
	User           string          `json:"user"`
	Extra          json.RawMessage `json:"fksteer"`
}

func (s *Server) openAIGenerate(w http.ResponseWriter, r *http.Request) {
	var req openAIRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	spec, err := specOf(req.Extra)
	if err != nil {
		writeError(w, err)
		return
	}
	spec.Prompt = req.Prompt
	if req.Model != "" {
		spec.Model = req.Model
	}
	spec.Images = 1
	if req.N != nil {
		if *req.N < 1 {
			writeError(w, badRequest("n", "n must be at least 1 (got %d)", *req.N))
			return
		}
		spec.Images = *req.N
	}
	switch req.ResponseFormat {
	case "", "b64_json", "url":
	default:
		writeError(w, badRequest("response_format", "response_format %q is not b64_json or url", req.ResponseFormat))
		return
	}
	switch req.OutputFormat {
	case "", "png", "jpeg", "jpg":
	default:
		writeError(w, badRequest("output_format", "output_format %q is not png or jpeg", req.OutputFormat))
		return
	}
	width, height, err := parseSize(req.Size)
	if err == nil {
		err = s.withSize(&spec, width, height)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	j, err := s.submit(spec)
	if err == nil {
		err = s.wait(r, j)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	type datum struct {
		B64JSON       string `json:"b64_json,omitempty"`
		URL           string `json:"url,omitempty"`
		RevisedPrompt string `json:"revised_prompt,omitempty"`
	}
	var data []datum
	snap := j.Snapshot()
	for i, o := range snap.Outputs {
		if req.ResponseFormat == "url" {
			data = append(data, datum{URL: absURL(r, o.URL)})
			continue
		}
		img := j.images[i]
		if req.OutputFormat == "jpeg" || req.OutputFormat == "jpg" {
			if img, err = s.jpeg(img); err != nil {
				writeError(w, err)
				return
			}
		}
		data = append(data, datum{B64JSON: base64.StdEncoding.EncodeToString(img)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"created": snap.Created.Unix(), "data": data})
}

// jpeg re-encodes a PNG output as JPEG.
func (s *Server) jpeg(data []byte) ([]byte, error) {
	img, err := rewards.DecodeImage(data, "output")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95})
	return buf.Bytes(), err
}

func absURL(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}

// listedModel is one model of GET /v1/models.
type listedModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// modelNames are the models a request may name without a path and run without a download:
// the built-in one, the configured ones that exist and the pulled catalog exports.
func (s *Server) modelNames() []string {
	list, err := s.cfg.Env.List()
	if err != nil {
		return []string{generation.DefaultModel}
	}
	var names []string
	for _, l := range list {
		if l.Ready {
			names = append(names, l.Name)
		}
	}
	return names
}

func (s *Server) openAIModels(w http.ResponseWriter, _ *http.Request) {
	var data []listedModel
	for _, n := range s.modelNames() {
		data = append(data, listedModel{ID: n, Object: "model", Created: s.started.Unix(), OwnedBy: "fksteer"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// createJob takes a run spec (a generation.Spec as JSON) and answers 202 with the job.
func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	var raw json.RawMessage
	if err := decodeJSON(r, &raw); err != nil {
		writeError(w, err)
		return
	}
	spec, err := generation.DecodeSpec(raw)
	if err != nil {
		writeError(w, badRequest("", "run spec: %v", err))
		return
	}
	j, err := s.submit(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", j.PollURL)
	writeJSON(w, http.StatusAccepted, map[string]any{"id": j.ID, "status": Queued, "poll_url": j.PollURL,
		"events_url": j.PollURL + "/events"})
}

func (s *Server) jobOr404(w http.ResponseWriter, r *http.Request) *Job {
	j := s.job(r.PathValue("id"))
	if j == nil {
		writeError(w, &apiError{status: http.StatusNotFound, typ: "invalid_request_error", param: "id",
			msg: fmt.Sprintf("no job %q (finished jobs are kept for a while, then forgotten)", r.PathValue("id"))})
	}
	return j
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	if j := s.jobOr404(w, r); j != nil {
		writeJSON(w, http.StatusOK, j.Snapshot())
	}
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	j := s.jobOr404(w, r)
	if j == nil {
		return
	}
	if !s.cancelJob(j) {
		writeError(w, &apiError{status: http.StatusConflict, typ: "invalid_request_error", msg: "the job has already ended: " + j.Snapshot().Status})
		return
	}
	writeJSON(w, http.StatusAccepted, j.Snapshot())
}

func (s *Server) jobImage(w http.ResponseWriter, r *http.Request) {
	j := s.jobOr404(w, r)
	if j == nil {
		return
	}
	n, err := strconv.Atoi(strings.TrimSuffix(r.PathValue("file"), ".png"))
	j.mu.Lock()
	var data []byte
	if err == nil && n >= 0 && n < len(j.images) && j.Status == Succeeded {
		data = j.images[n]
	}
	j.mu.Unlock()
	if data == nil {
		writeError(w, &apiError{status: http.StatusNotFound, typ: "invalid_request_error", msg: "no such image of this job"})
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Disposition", fmt.Sprintf("inline; filename=%q", fmt.Sprintf("%s-%d.png", j.ID, n)))
	_, _ = w.Write(data)
}

// jobEvents streams the job's events as Server-Sent Events: every event so far, then each new
// one, then the end; a client that goes away stops only its stream.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) {
	j := s.jobOr404(w, r)
	if j == nil {
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: "server_error", msg: "streaming unsupported"})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	past, ch := j.subscribe()
	defer j.unsubscribe(ch)
	send := func(e Event) bool {
		data, _ := json.Marshal(e)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, data); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	for _, e := range past {
		if !send(e) {
			return
		}
	}
	for {
		select {
		case e, ok := <-ch:
			if !ok || !send(e) {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

// scoreRequest asks the reward server for the scores of images. Prompts holds one prompt per
// image, or Prompt one for all.
type scoreRequest struct {
	Images  []string `json:"images"`
	Prompts []string `json:"prompts"`
	Prompt  string   `json:"prompt"`
	Reward  string   `json:"reward"`
}

// scored is one image's score with its parts (OCR text included).
type scored struct {
	Score generation.Score  `json:"score"`
	Parts []generation.Part `json:"parts,omitempty"`
}

func (s *Server) score(w http.ResponseWriter, r *http.Request) {
	var req scoreRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	switch {
	case req.Reward == "":
		writeError(w, badRequest("reward", "reward is required: a reward spec (name:key=value,...) or a configured reward's name"))
		return
	case len(req.Images) == 0:
		writeError(w, badRequest("images", "images is empty: send base64 PNG or JPEG images"))
		return
	case len(req.Images) > s.cfg.Limits.Scores:
		writeError(w, badRequest("images", "%d images is over this server's limit of %d per request", len(req.Images), s.cfg.Limits.Scores))
		return
	case len(req.Prompts) != 0 && len(req.Prompts) != len(req.Images):
		writeError(w, badRequest("prompts", "%d prompts for %d images: send one per image, or one prompt for all", len(req.Prompts), len(req.Images)))
		return
	}
	spec, err := s.rewardSpec(req.Reward)
	if err != nil {
		writeError(w, err)
		return
	}
	rw, err := s.cfg.Env.Reward(spec, pipelines.Info{})
	if err != nil {
		writeError(w, err)
		return
	}
	imgs := make([]pixels.Images, len(req.Images))
	for i, b := range req.Images {
		if imgs[i], err = decodeUpload(b, fmt.Sprintf("images[%d]", i)); err != nil {
			writeError(w, err)
			return
		}
	}
	out, err := scoreBatched(r.Context(), rw, imgs, func(i int) string {
		if len(req.Prompts) > 0 {
			return req.Prompts[i]
		}
		return req.Prompt
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reward": rw.Name(), "scores": out})
}

// scoreBatched scores images in one reward call per (prompt, size) batch, keeping their order.
func scoreBatched(ctx context.Context, rw rewards.Reward, imgs []pixels.Images, prompt func(int) string) ([]scored, error) {
	type key struct {
		prompt  string
		c, h, w int
	}
	groups := map[key][]int{}
	var keys []key
	for i, im := range imgs {
		k := key{prompt(i), im.C, im.H, im.W}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	out := make([]scored, len(imgs))
	for _, k := range keys {
		idx := groups[k]
		batch := pixels.NewImages(len(idx), k.c, k.h, k.w)
		for b, i := range idx {
			copy(batch.At(b), imgs[i].Pix)
		}
		scores, parts, err := rewards.Explain(ctx, rw, batch, k.prompt)
		if err != nil {
			return nil, err
		}
		for b, i := range idx {
			out[i].Score = generation.Score(scores[b])
			out[i].Parts = generation.Parts(parts[b])
		}
	}
	return out, nil
}

// decodeUpload decodes a base64 image (a data: URL prefix allowed) with the pixel limit.
func decodeUpload(b64, name string) (pixels.Images, error) {
	if _, after, ok := strings.Cut(b64, ";base64,"); ok && strings.HasPrefix(b64, "data:") {
		b64 = after
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return pixels.Images{}, badRequest(name, "%s is not base64: %v", name, err)
	}
	img, err := rewards.DecodeImage(data, name)
	if err != nil {
		return pixels.Images{}, badRequest(name, "%v", err)
	}
	return rewards.FromImage(img), nil
}

// a1111Request is the subset of AUTOMATIC1111's txt2img/img2img request its clients use.
type a1111Request struct {
	Prompt            string          `json:"prompt"`
	NegativePrompt    string          `json:"negative_prompt"`
	Seed              *int64          `json:"seed"`
	Steps             int             `json:"steps"`
	CFGScale          *float64        `json:"cfg_scale"`
	Width             int             `json:"width"`
	Height            int             `json:"height"`
	BatchSize         int             `json:"batch_size"`
	NIter             int             `json:"n_iter"`
	SamplerName       string          `json:"sampler_name"`
	SamplerIndex      string          `json:"sampler_index"`
	Scheduler         string          `json:"scheduler"`
	DenoisingStrength float64         `json:"denoising_strength"`
	InitImages        []string        `json:"init_images"`
	OverrideSettings  map[string]any  `json:"override_settings"`
	Extra             json.RawMessage `json:"fksteer"`
}

// a1111Samplers maps AUTOMATIC1111's sampler names to fksteer's step rules.
var a1111Samplers = map[string]string{
	"Euler": "euler", "Euler a": "euler-a", "DDIM": "ddim", "DDPM": "ddpm", "LCM": "lcm",
}

func (s *Server) a1111Generate(w http.ResponseWriter, r *http.Request) {
	var req a1111Request
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	spec, err := s.a1111Spec(&req, r.URL.Path == "/sdapi/v1/img2img")
	if err == nil {
		err = s.withSize(&spec, req.Width, req.Height)
	}
	var j *Job
	if err == nil {
		j, err = s.submit(spec)
	}
	if err == nil {
		err = s.wait(r, j)
	}
	s.removeTemp(spec.InitImage)
	if err != nil {
		writeError(w, err)
		return
	}
	snap := j.Snapshot()
	var images []string
	var seeds []uint64
	var infotexts []string
	for i, o := range snap.Outputs {
		images = append(images, base64.StdEncoding.EncodeToString(j.images[i]))
		seeds = append(seeds, o.Seed)
		infotexts = append(infotexts, o.Parameters)
	}
	info, _ := json.Marshal(map[string]any{"prompt": spec.Prompt, "negative_prompt": spec.NegativePrompt,
		"seed": spec.Seed, "all_seeds": seeds, "steps": spec.Steps, "width": req.Width, "height": req.Height,
		"sampler_name": req.SamplerName, "infotexts": infotexts})
	writeJSON(w, http.StatusOK, map[string]any{"images": images, "parameters": req, "info": string(info)})
}

// a1111Spec translates an AUTOMATIC1111 request into a spec.
func (s *Server) a1111Spec(req *a1111Request, img2img bool) (generation.Spec, error) {
	spec, err := specOf(req.Extra)
	if err != nil {
		return spec, err
	}
	spec.Prompt, spec.NegativePrompt = req.Prompt, req.NegativePrompt
	if spec.Model == "" {
		spec.Model = s.checkpoint()
	}
	if m, ok := req.OverrideSettings["sd_model_checkpoint"].(string); ok && m != "" {
		spec.Model = m
	}
	if req.Steps > 0 {
		spec.Steps = req.Steps
	}
	if req.CFGScale != nil {
		spec.Guidance = req.CFGScale
	}
	switch {
	case req.Seed == nil || *req.Seed < 0: // A1111's -1: a random seed, reported in info
		spec.Seed = rand.Uint64() >> 1
	default:
		spec.Seed = uint64(*req.Seed)
	}
	n := max(1, req.BatchSize) * max(1, req.NIter)
	spec.Images = n
	name := cmp.Or(req.SamplerName, req.SamplerIndex)
	if name != "" {
		if rule, ok := a1111Samplers[name]; ok {
			spec.Sampler = rule
		} else {
			spec.Sampler = name // fksteer's own names pass through; Prepare refuses unknown ones
		}
	}
	if req.Scheduler != "" && req.Scheduler != "Automatic" {
		spec.Scheduler = req.Scheduler
	}
	if img2img {
		if len(req.InitImages) == 0 {
			return spec, badRequest("init_images", "img2img needs one init image (base64)")
		}
		img, err := decodeUpload(req.InitImages[0], "init_images[0]")
		if err != nil {
			return spec, err
		}
		path, err := s.tempImage(img)
		if err != nil {
			return spec, err
		}
		spec.InitImage = path
		spec.Strength = req.DenoisingStrength
		if spec.Strength == 0 {
			spec.Strength = 0.75 // AUTOMATIC1111's default
		}
	}
	return spec, nil
}

func (s *Server) a1111Models(w http.ResponseWriter, _ *http.Request) {
	var out []map[string]any
	for _, n := range s.modelNames() {
		path := n
		if p, ok := s.cfg.Env.Models[n]; ok {
			path = p
		}
		out = append(out, map[string]any{"title": n, "model_name": n, "hash": nil, "sha256": nil, "filename": filepath.Base(path), "config": nil})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) a1111Samplers(w http.ResponseWriter, _ *http.Request) {
	var out []map[string]any
	names := make([]string, 0, len(a1111Samplers))
	for n := range a1111Samplers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		out = append(out, map[string]any{"name": n, "aliases": []string{a1111Samplers[n]}, "options": map[string]any{}})
	}
	for _, n := range []string{"flow-sde", "flow-sde-clean"} {
		out = append(out, map[string]any{"name": n, "aliases": []string{n}, "options": map[string]any{}})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) a1111Schedulers(w http.ResponseWriter, _ *http.Request) {
	var out []map[string]any
	for _, n := range []string{"Automatic", "ddim", "ddpm", "pndm", "euler", "euler-a", "dpm++2m", "lcm"} {
		out = append(out, map[string]any{"name": n, "label": n})
	}
	writeJSON(w, http.StatusOK, out)
}

// a1111Progress reports the running job nearest its end: AUTOMATIC1111's progress, its state
// and the best particle's preview at the last evaluation.
func (s *Server) a1111Progress(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	var cur *Job
	queued := len(s.queue)
	for _, j := range s.jobs {
		j.mu.Lock()
		if j.Status == Running && (cur == nil || j.Created.Before(cur.Created)) {
			cur = j
		}
		j.mu.Unlock()
	}
	s.mu.Unlock()
	resp := map[string]any{"progress": 0.0, "eta_relative": 0.0, "current_image": nil, "textinfo": nil,
		"state": map[string]any{"job_count": queued, "sampling_step": 0, "sampling_steps": 0, "interrupted": false, "skipped": false}}
	if cur != nil {
		cur.mu.Lock()
		p := cur.Progress
		var preview string
		for i := len(cur.events) - 1; i >= 0; i-- {
			if len(cur.events[i].Previews) > 0 {
				preview = cur.events[i].Previews[0]
				break
			}
		}
		started := cur.Started
		cur.mu.Unlock()
		if p.Steps > 0 {
			frac := float64(p.Step) / float64(p.Steps)
			resp["progress"] = frac
			if started != nil && frac > 0 {
				elapsed := time.Since(*started).Seconds()
				resp["eta_relative"] = elapsed/frac - elapsed
			}
		}
		resp["state"] = map[string]any{"job": cur.ID, "job_count": queued + 1, "sampling_step": p.Step, "sampling_steps": p.Steps, "interrupted": false, "skipped": false}
		if preview != "" {
			resp["current_image"] = preview
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// tempImage writes an uploaded init image where the run reads it, and remembers it as the
// server's own file (the only init images a request may use outside the allowed folders).
func (s *Server) tempImage(img pixels.Images) (string, error) {
	f, err := os.CreateTemp("", "fksteer-init-*.png")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := png.Encode(f, img.Image(0)); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	s.mu.Lock()
	s.temps[f.Name()] = true
	s.mu.Unlock()
	return f.Name(), nil
}

// removeTemp removes a file tempImage wrote; other paths are left alone.
func (s *Server) removeTemp(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.temps[path] {
		delete(s.temps, path)
		os.Remove(path)
	}
}

// checkpoint is the model AUTOMATIC1111 requests use when they name none (POST
// /sdapi/v1/options sets it, as Open WebUI does to pick a model).
func (s *Server) checkpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cmp.Or(s.a1111Model, generation.DefaultModel)
}

func (s *Server) a1111Options(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var opts map[string]any
		if err := decodeJSON(r, &opts); err != nil {
			writeError(w, err)
			return
		}
		if m, ok := opts["sd_model_checkpoint"].(string); ok && m != "" {
			if err := s.checkModel(m); err != nil {
				writeError(w, err)
				return
			}
			if _, err := s.cfg.Env.Model(generation.Spec{Model: m}); err != nil {
				writeError(w, err)
				return
			}
			s.mu.Lock()
			s.a1111Model = m
			s.mu.Unlock()
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sd_model_checkpoint": s.checkpoint(), "samples_format": "png"})
}
