package sampler

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler/step"
	"github.com/fksteer/fksteer/schedule"
)

// Run samples with p as cfg says and returns the selected outputs. Every method (cfg.Method,
// one file each: base.go, fk.go, svdd.go, beam.go, dts.go, noise.go) is built from the engine's
// primitives: one batched model call for all the rows of a step ([engine.predict]), the step
// rule ([engine.stepPop]), scoring ([engine.score]) and the population's copy and resample
// operations. Each leaves its final samples in the population, K = cfg.Particles rows per
// group, which Run then scores, records and selects from alike.
//
// Results depend only on the configuration and seed: group g draws from streams seeded by
// cfg.Seed+g, so neither the number of groups in the batch nor the order of work changes them.
//
// With cfg.Init the run is image-to-image: it walks the last cfg.StepsWalked() steps of
// p.Schedule(cfg.Steps), starting each particle at Alpha*Init + Sigma*z on the first of them.
// When p is a [pipelines.Previewer], intermediate rewards score images made by its Preview
// decoder; the final rewards and images always use Decode.
func Run(ctx context.Context, p pipelines.Pipeline, cfg Config) (*Result, error) {
	start := time.Now()
	info := p.Info()
	if err := cfg.ValidateFor(info); err != nil {
		return nil, err
	}
	levels, err := p.Schedule(cfg.Steps)
	if err != nil {
		return nil, err
	}
	if len(levels) != cfg.Steps+1 {
		return nil, fmt.Errorf("pipeline %s returned %d levels for %d steps, want %d", info.Name, len(levels), cfg.Steps, cfg.Steps+1)
	}
	// An image-to-image run walks only the end of the schedule (diffusers' get_timesteps).
	levels = levels[cfg.Steps-cfg.StepsWalked():]
	// This run's own model figures (text encoding included), even when other runs share the
	// pipeline.
	var model pipelines.Stats
	cond, err := p.Condition(ctx, &model, cfg.Prompt, cfg.CondOpts)
	if err != nil {
		return nil, err
	}
	e, err := newEngine(p, cfg, info, levels, cond)
	if err != nil {
		return nil, err
	}
	e.model = &model
	if err := methodOf(cfg.Method).run(ctx, e); err != nil {
		return nil, err
	}
	res, err := e.result()
	if err != nil {
		return nil, err
	}
	res.Cond, res.Model, res.Settings = cond, info, cfg
	res.Settings.Observer = nil // the run is over: nothing is observed through the result
	st := &res.Stats
	st.Steps = e.n
	st.NFE = e.nfe
	st.ModelCalls = model.ModelCalls
	st.ModelTime = model.ModelTime
	st.RewardCalls = e.rewardCalls
	st.RewardEvals = e.rewardEvals
	st.Decoded, st.Previewed = e.decoded, e.previewed
	st.RewardTime = e.rewardTime
	st.Resamplings = e.resamplings
	st.ESS = e.ess
	st.Wall = time.Since(start)
	st.AuxCalls = model.AuxCalls
	st.AuxTime = model.AuxTime
	st.EngineTime = st.Wall - st.ModelTime - st.AuxTime - st.RewardTime
	return res, nil
}

// engine holds one run's settings, its pre-allocated population and buffers, and the counted
// primitives every method is written in, so that a method's step loop allocates nothing and
// every denoiser row, reward evaluation and decoded image is counted in one place.
type engine struct {
	p         pipelines.Pipeline
	cfg       Config
	levels    []schedule.Level
	cond      pipelines.Cond
	n         int // steps walked
	groups, k int
	rows, dim int
	// twins is the denoiser rows one state costs: 2 with classifier-free guidance, else 1.
	twins int

	pop     *particles.Population
	streams *particles.Streams
	x0, eps []float32
	// prevX0 is DPM-Solver++(2M)'s memory, each row's x0 prediction of the previous step: a
	// population field (fieldPrevX0), so resampling copies it with the particle. Nil for
	// one-step rules.
	prevX0 []float32
	// previewer is p as a Previewer, if it is one; nil otherwise.
	previewer pipelines.Previewer
	mean      []float32
	noise     []float32
	// imgs and scores hold the last scored rows (imgs.N = rows; methods that score more rows
	// at once grow them once, with reserve).
	imgs   pixels.Images
	scores []float64
	// parts holds each row's final reward breakdown (rewards.Explain's convention).
	parts [][]rewards.PartScore
	seeds []uint64
	rec   *recorder
	// model is the run's own model figures, which every pipeline call adds to.
	model *pipelines.Stats
	// explains tells whether the reward is a rewards.Explainer, whose outputs report their parts.
	explains bool
	// logW is the normalised final log-weight of every row (FK); zero for other methods.
	logW []float64
	// roots reports, per group, how many distinct initial rows its final rows descend from;
	// nil means all K (no method moved rows between slots).
	roots func(g int) int

	nfe, rewardCalls, rewardEvals, decoded, previewed int
	rewardTime                                        time.Duration
	resamplings                                       int
	ess                                               []ESSPoint
}

// fieldPrevX0 is the population field of DPM-Solver++(2M)'s previous x0 prediction.
const fieldPrevX0 = "sampler.prev_x0"

// newEngine allocates what every method needs and draws the initial states at levels[0], the
// first level the run walks (len(levels)-1 steps).
func newEngine(p pipelines.Pipeline, cfg Config, info pipelines.Info, levels []schedule.Level, cond pipelines.Cond) (*engine, error) {
	e := &engine{p: p, cfg: cfg, levels: levels, cond: cond, n: len(levels) - 1,
		groups: cfg.Images, k: cfg.Particles, dim: info.Len(), twins: 1}
	if cfg.Guidance > 1 && cond.Guidable() {
		e.twins = 2
	}
	e.rows = e.groups * e.k
	var err error
	if e.pop, err = particles.New(e.groups, e.k, e.dim); err != nil {
		return nil, err
	}
	if cfg.Rule == schedule.DPMpp2MRule {
		e.prevX0 = e.pop.AddFloat32(fieldPrevX0, e.dim)
	}
	e.previewer, _ = p.(pipelines.Previewer)
	e.x0 = make([]float32, e.rows*e.dim)
	e.eps = make([]float32, e.rows*e.dim)
	e.seeds = make([]uint64, e.groups)
	for g := range e.seeds {
		e.seeds[g] = cfg.Seed + uint64(g)
	}
	if e.streams, err = particles.NewStreams(e.seeds, e.k); err != nil {
		return nil, err
	}
	// The initial state is pure noise: at the first level of every schedule fksteer builds,
	// Alpha^2 + Sigma^2 = 1 and the data's contribution is negligible or zero. An
	// image-to-image run starts from Alpha*Init + Sigma*z instead (diffusers' add_noise). Every
	// slot draws its own z, so streams stay aligned even when the group then shares slot 0's.
	for row := range e.rows {
		x := e.pop.Row(row)
		e.streams.FillNormal(row, x)
		if cfg.Init != nil {
			noisy(x, cfg.Init, levels[0])
		}
	}
	if cfg.SharedStart {
		for g := range e.groups {
			x := e.pop.GroupX(g)
			for k := 1; k < e.k; k++ {
				copy(x[k*e.dim:(k+1)*e.dim], x[:e.dim])
			}
		}
	}
	e.mean = make([]float32, e.rows*e.dim)
	e.noise = make([]float32, e.rows*e.dim)
	e.imgs = pixels.NewImages(e.rows, info.ImageChannels, info.ImageHeight, info.ImageWidth)
	e.scores = make([]float64, e.rows)
	e.logW = make([]float64, e.rows)
	if cfg.Reward != nil {
		e.parts = make([][]rewards.PartScore, e.rows)
		_, e.explains = cfg.Reward.(rewards.Explainer)
	}
	if cfg.Record {
		e.rec = newRecorder(levels, e.rows, e.dim, e.seeds)
	}
	return e, nil
}

// noisy overwrites the noise z in x with Alpha*x0 + Sigma*z, a state at level l whose clean
// part is x0.
func noisy(x, x0 []float32, l schedule.Level) {
	for i, z := range x {
		x[i] = float32(l.Alpha*float64(x0[i]) + l.Sigma*float64(z))
	}
}

// predict is the one model call of a step: the x0 and eps predictions of the rows states x at
// level l, written to x0 and eps. It counts the denoiser rows evaluated (NFE).
func (e *engine) predict(ctx context.Context, x []float32, rows int, l schedule.Level, x0, eps []float32) error {
	e.nfe += rows * e.twins
	return e.p.Predict(ctx, e.model, x[:rows*e.dim], rows, l, e.cond, e.cfg.Guidance, x0[:rows*e.dim], eps[:rows*e.dim])
}

// predictPop predicts every population row at the start of step i.
func (e *engine) predictPop(ctx context.Context, i int) error {
	if err := e.predict(ctx, e.pop.X, e.rows, e.levels[i], e.x0, e.eps); err != nil {
		return fmt.Errorf("step %d/%d: %w", i+1, e.n, err)
	}
	return nil
}

// rule computes step i's mean for rows states x with predictions x0 and eps (and, for a
// multistep rule, prevX0) into mean, and returns the step's standard deviation.
func (e *engine) rule(i int, mean, x, x0, eps, prevX0 []float32) float64 {
	// A multistep rule is given the previous step's level when it takes a second-order step.
	var prev *schedule.Level
	if prevX0 != nil && e.secondOrder(i) {
		prev = &e.levels[i-1]
	}
	return step.Take(e.cfg.Rule, mean, x, x0, eps, prevX0, prev, e.levels[i], e.levels[i+1], e.cfg.Eta)
}

// stepPop takes step i for every population row: x' = mean + std*z, each row with noise from
// its own stream, recorded when the run records. Each row's prediction becomes its multistep
// memory before any resampling, so that a copied particle carries its own.
func (e *engine) stepPop(i int) {
	e.stepWith(i, e.rule(i, e.mean, e.pop.X, e.x0, e.eps, e.prevX0))
}

// stepWith is stepPop with the rule already applied: e.mean holds the step's means and std is
// its standard deviation.
func (e *engine) stepWith(i int, std float64) {
	x := e.pop.X
	if e.rec != nil {
		e.rec.start(i, x)
	}
	e.move(x, e.mean, std, e.rows, e.streams.FillNormal)
	if e.rec != nil {
		e.rec.step(i, e.mean, x, std)
	}
	if e.prevX0 != nil {
		copy(e.prevX0, e.x0)
	}
}

// plainStep takes step i for every population row with e.mean and std already computed (no
// selection: a step of a search method that does not branch, or draws no noise), then
// predicts the rows at the next level, unless it was the last step.
func (e *engine) plainStep(ctx context.Context, i int, std float64) error {
	e.stepWith(i, std)
	if i == e.n-1 {
		return nil
	}
	return e.predictPop(ctx, i+1)
}

// move sets x = mean + std*z for rows rows, row r's z drawn by fill(r, ...); with std 0 it
// copies mean.
func (e *engine) move(x, mean []float32, std float64, rows int, fill func(row int, dst []float32)) {
	if std <= 0 {
		copy(x[:rows*e.dim], mean[:rows*e.dim])
		return
	}
	if len(e.noise) < rows*e.dim {
		e.noise = make([]float32, rows*e.dim)
	}
	for row := range rows {
		fill(row, e.noise[row*e.dim:(row+1)*e.dim])
	}
	s := float32(std)
	for j, m := range mean[:rows*e.dim] {
		x[j] = m + s*e.noise[j]
	}
}

// extraStreams returns streams for width more rows per group, beside the population's K: the
// noise of candidates, children, rollouts and neighbours. Row r = g*width + j draws from group
// g's stream of slot K+j, so it shares no stream with a population row, and what it draws
// depends on the group's seed alone.
func (e *engine) extraStreams(width int) (fill func(row int, dst []float32), err error) {
	s, err := particles.NewStreams(e.seeds, e.k+width)
	if err != nil {
		return nil, err
	}
	return func(row int, dst []float32) {
		g, j := row/width, row%width
		s.FillNormal(g*(e.k+width)+e.k+j, dst)
	}, nil
}

// secondOrder reports whether DPM-Solver++(2M) takes its second-order step at step i of the n
// steps the run walks. As diffusers' DPMSolverMultistepScheduler (solver_order 2) it does not:
// at the run's first step, image-to-image included, which has no previous prediction; onto a
// clean level (final_sigmas_type "zero"); and at the last step of a schedule of fewer than 15
// steps (lower_order_final). diffusers counts the whole schedule there, cfg.Steps, even when an
// image-to-image run walks only its end.
func (e *engine) secondOrder(i int) bool {
	return i > 0 && !e.levels[i+1].Clean() && !(i == e.n-1 && e.cfg.Steps < 15)
}

// observe calls the observer with si and reports whether the run must stop.
func (e *engine) observe(ctx context.Context, si StepInfo) error {
	if e.cfg.Observer != nil {
		e.cfg.Observer(si)
	}
	return ctx.Err()
}

// reserve grows the scoring buffers to hold rows images.
func (e *engine) reserve(rows int) {
	if e.imgs.N < rows {
		e.imgs = pixels.NewImages(rows, e.imgs.C, e.imgs.H, e.imgs.W)
	}
	if len(e.scores) < rows {
		e.scores = make([]float64, rows)
	}
}

// score decodes rows states and scores them in one reward call, into e.scores[:rows] (and the
// decoded images into e.imgs). With preview, a Previewer pipeline decodes them with Preview.
// With parts, each row's breakdown is written there too (rewards.Explain's convention). Unless
// anyNaN, a group of per rows without a single finite score is an error: its weights (FK) or its
// choice (the searches) would rest on nothing.
func (e *engine) score(ctx context.Context, states []float32, rows, per int, preview bool, parts [][]rewards.PartScore, anyNaN bool) ([]float64, error) {
	if err := e.decode(ctx, states, rows, preview); err != nil {
		return nil, err
	}
	imgs, scores := e.images(rows), e.scores[:rows]
	start := time.Now()
	var err error
	if ex, ok := e.cfg.Reward.(rewards.Explainer); ok && parts != nil {
		err = ex.Explain(ctx, imgs, e.cfg.Prompt, scores, parts)
	} else {
		err = e.cfg.Reward.Score(ctx, imgs, e.cfg.Prompt, scores)
		if parts != nil {
			name := e.cfg.Reward.Name()
			for row, s := range scores {
				parts[row] = append(parts[row][:0], rewards.PartScore{Name: name, Weight: 1, Score: s})
			}
		}
	}
	e.rewardTime += time.Since(start)
	e.rewardCalls++
	e.rewardEvals += rows
	if err != nil {
		return nil, rewards.NameError(e.cfg.Reward.Name(), err)
	}
	if anyNaN {
		return scores, nil
	}
	for g := range rows / per {
		finite := false
		for _, s := range scores[g*per : (g+1)*per] {
			if !math.IsNaN(s) && !math.IsInf(s, 0) {
				finite = true
				break
			}
		}
		if !finite {
			what := "particles"
			if rows != e.rows {
				what = "candidates" // svdd's, one particle's; beam's, an image's
			}
			return nil, fmt.Errorf("reward %s returned no finite score for any of the %d %s of image %d: check the reward's model and options",
				e.cfg.Reward.Name(), per, what, g*per*e.groups/rows)
		}
	}
	return scores, nil
}

// images returns the first rows of e.imgs.
func (e *engine) images(rows int) pixels.Images {
	imgs := e.imgs
	imgs.N = rows
	imgs.Pix = imgs.Pix[:rows*imgs.C*imgs.H*imgs.W]
	return imgs
}

// decode turns rows states into e.imgs, with the pipeline's preview decoder when preview is set
// and the pipeline has one.
func (e *engine) decode(ctx context.Context, states []float32, rows int, preview bool) error {
	e.reserve(rows)
	imgs := e.images(rows)
	if preview && e.previewer != nil {
		e.previewed += rows
		return e.previewer.Preview(ctx, e.model, states[:rows*e.dim], rows, imgs)
	}
	e.decoded += rows
	return e.p.Decode(ctx, e.model, states[:rows*e.dim], rows, imgs)
}

// scoreFinal decodes the final population and, when the run has a reward, scores it with every
// row's parts. Unless anyNaN, a group without a finite score is an error (see score).
func (e *engine) scoreFinal(ctx context.Context, anyNaN bool) error {
	if e.cfg.Reward == nil {
		return e.decode(ctx, e.pop.X, e.rows, false)
	}
	if _, err := e.score(ctx, e.pop.X, e.rows, e.k, false, e.parts, anyNaN); err != nil {
		return fmt.Errorf("final reward: %w", err)
	}
	return nil
}

// result assembles the Result from the final population the method left, its decoded images
// and scores (scoreFinal), and selects the outputs.
func (e *engine) result() (*Result, error) {
	cfg := e.cfg
	res := &Result{Rewards: make([]float64, e.rows), LogWeights: e.logW}
	if cfg.Reward != nil {
		copy(res.Rewards, e.scores[:e.rows])
	} else {
		for i := range res.Rewards {
			res.Rewards[i] = math.NaN()
		}
	}
	res.All, res.Parts = e.images(e.rows), e.parts
	if n := e.pop.NumEvents(); n > 0 {
		res.Events = make([]particles.Event, n)
		for i := range n {
			res.Events[i] = e.pop.Event(i)
		}
	}
	if e.rec != nil {
		res.Trajectories = e.rec.finish(e.pop.X, e.pop)
	}
	var picks []int
	pick := make([]int, 1)
	for g := range e.groups {
		switch cfg.Select {
		case SelectAll:
			for k := range e.k {
				picks = append(picks, g*e.k+k)
			}
		case SelectBest:
			best := g * e.k
			for row := g * e.k; row < (g+1)*e.k; row++ {
				if res.Rewards[row] > res.Rewards[best] || math.IsNaN(res.Rewards[best]) && !math.IsNaN(res.Rewards[row]) {
					best = row
				}
			}
			picks = append(picks, best)
		case SelectSample:
			if err := particles.Multinomial.Resample(e.streams.Resampler(g), res.LogWeights[g*e.k:(g+1)*e.k], pick); err != nil {
				return nil, fmt.Errorf("select image %d by weight: %w", g, err)
			}
			picks = append(picks, g*e.k+pick[0])
		}
	}
	size := res.All.Len()
	res.Images = pixels.NewImages(len(picks), res.All.C, res.All.H, res.All.W)
	for i, row := range picks {
		copy(res.Images.At(i), res.All.Pix[row*size:(row+1)*size])
		g := row / e.k
		out := Output{Group: g, Particle: row % e.k, Seed: cfg.Seed + uint64(g), Reward: res.Rewards[row], LogWeight: res.LogWeights[row], Roots: e.k}
		if e.roots != nil {
			out.Roots = e.roots(g)
		}
		if e.explains {
			out.Parts = e.parts[row]
		}
		res.Outputs = append(res.Outputs, out)
	}
	return res, nil
}
