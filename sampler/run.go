package sampler

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler/step"
	"github.com/fksteer/fksteer/schedule"
)

// Run samples with p as cfg says and returns the selected outputs. One call runs cfg.Images
// groups of cfg.Particles particles as one model batch; every step is read top to bottom:
// predict, score and reweight, step, maybe resample, observe. As DESIGN.md (section 4) fixes it,
// the weight of step t uses the x0 prediction made from x_t, and what resampling copies is the
// stepped state x_{t-1}.
//
// Results depend only on the configuration and seed: group g draws from streams seeded by
// cfg.Seed+g, so neither the number of groups in the batch nor the order of work changes them.
//
// With cfg.Init the run is image-to-image: it walks the last cfg.StepsWalked() steps of
// p.Schedule(cfg.Steps), starting each particle at Alpha*Init + Sigma*z on the first of them.
// When p is a [pipelines.Previewer], the intermediate rewards of FK score images made by its
// Preview decoder; the final rewards and images always use Decode.
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
	r, err := newRun(p, cfg, info, levels)
	if err != nil {
		return nil, err
	}
	r.model = &model
	if cfg.Record {
		r.rec = newRecorder(levels, r.rows, r.dim, r.seeds)
	}

	n := len(levels) - 1
	for i := range n {
		from, to := levels[i], levels[i+1]
		if r.rec != nil {
			r.rec.start(i, r.pop.X)
		}
		// 1. Predict x0 and eps for every particle in one batched model call.
		if err := p.Predict(ctx, r.model, r.pop.X, r.rows, from, cond, cfg.Guidance, r.x0, r.eps); err != nil {
			return nil, fmt.Errorf("step %d/%d: %w", i+1, n, err)
		}
		si := StepInfo{Step: i, Steps: n, From: from, To: to}
		// 2. Score the x0 predictions and multiply each weight by its potential. The schedule's
		// final evaluation (step n-1) happens after the loop, on the final samples themselves.
		evaluate := cfg.Method == FK && i < n-1 && cfg.Resampling.Evaluates(i, n)
		if evaluate {
			if err := r.reweight(ctx, i, n); err != nil {
				return nil, fmt.Errorf("step %d/%d: %w", i+1, n, err)
			}
		}
		// 3. Step every particle: x' = mean + std*z, each row with noise from its own stream.
		// A multistep rule is given the previous step's level when it takes a second-order step.
		var prev *schedule.Level
		if r.prevX0 != nil && r.secondOrder(i, n, to) {
			prev = &levels[i-1]
		}
		std := step.Take(cfg.Rule, r.mean, r.pop.X, r.x0, r.eps, r.prevX0, prev, from, to, cfg.Eta)
		if std > 0 {
			for row := range r.rows {
				r.streams.FillNormal(row, r.noise[row*r.dim:(row+1)*r.dim])
			}
			for j, m := range r.mean {
				r.pop.X[j] = m + float32(std)*r.noise[j]
			}
		} else {
			copy(r.pop.X, r.mean)
		}
		if r.rec != nil {
			r.rec.step(i, r.mean, r.pop.X, std)
		}
		// Each particle's prediction becomes its multistep memory before any resampling, so
		// that a copied particle carries its own.
		if r.prevX0 != nil {
			copy(r.prevX0, r.x0)
		}
		if cfg.SharedPrefix > 0 && i == cfg.SharedPrefix-1 {
			if err := r.sharePrefix(i); err != nil {
				return nil, err
			}
		}
		// 4. Resample the stepped particles where the schedule (and the ESS) say so.
		if evaluate {
			if err := r.resample(i, &si); err != nil {
				return nil, fmt.Errorf("step %d/%d: %w", i+1, n, err)
			}
		}
		// 5. Observe.
		if cfg.Observer != nil {
			cfg.Observer(si)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	res, err := r.finish(ctx, n)
	if err != nil {
		return nil, err
	}
	res.Cond, res.Model, res.Settings = cond, info, cfg
	res.Settings.Observer = nil // the run is over: nothing is observed through the result
	res.Stats.Steps = n
	res.Stats.ModelCalls = model.ModelCalls
	res.Stats.ModelTime = model.ModelTime
	res.Stats.RewardCalls = r.rewardCalls
	res.Stats.RewardTime = r.rewardTime
	res.Stats.Resamplings = r.resamplings
	res.Stats.ESS = r.ess
	res.Stats.Wall = time.Since(start)
	res.Stats.AuxCalls = model.AuxCalls
	res.Stats.AuxTime = model.AuxTime
	res.Stats.EngineTime = res.Stats.Wall - res.Stats.ModelTime - res.Stats.AuxTime - res.Stats.RewardTime
	return res, nil
}

// run holds one run's pre-allocated state, so the step loop allocates nothing.
type run struct {
	p         pipelines.Pipeline
	cfg       Config
	info      pipelines.Info
	groups, k int
	rows, dim int

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
	imgs      pixels.Images
	scores    []float64
	// parts holds each row's final reward breakdown (rewards.Explain's convention).
	parts   [][]rewards.PartScore
	parents []int
	pot     *potentials.Potential
	seeds   []uint64
	rec     *recorder
	// model is the run's own model figures, which every pipeline call adds to.
	model *pipelines.Stats

	// explains tells whether the reward is a rewards.Explainer, whose outputs report their parts.
	explains bool

	rewardCalls int
	rewardTime  time.Duration
	resamplings int
	ess         []ESSPoint
	// parentsAll records every row's parent slot at the current evaluation, for observers.
	parentsAll []int
	// essBuf and resampledBuf back every ESSPoint of the run, allocated once.
	essBuf       []float64
	resampledBuf []bool
}

// fieldPrevX0 is the population field of DPM-Solver++(2M)'s previous x0 prediction.
const fieldPrevX0 = "sampler.prev_x0"

// newRun allocates everything a run needs and draws the initial states at levels[0], the first
// level the run walks (len(levels)-1 steps).
func newRun(p pipelines.Pipeline, cfg Config, info pipelines.Info, levels []schedule.Level) (*run, error) {
	r := &run{p: p, cfg: cfg, info: info, groups: cfg.Images, k: cfg.Particles, dim: info.Len()}
	r.rows = r.groups * r.k
	n := len(levels) - 1
	var err error
	if r.pop, err = particles.New(r.groups, r.k, r.dim); err != nil {
		return nil, err
	}
	if cfg.Rule == schedule.DPMpp2MRule {
		r.prevX0 = r.pop.AddFloat32(fieldPrevX0, r.dim)
	}
	r.previewer, _ = p.(pipelines.Previewer)
	r.x0 = make([]float32, r.rows*r.dim)
	r.eps = make([]float32, r.rows*r.dim)
	r.seeds = make([]uint64, r.groups)
	for g := range r.seeds {
		r.seeds[g] = cfg.Seed + uint64(g)
	}
	if r.streams, err = particles.NewStreams(r.seeds, r.k); err != nil {
		return nil, err
	}
	// The initial state is pure noise: at the first level of every schedule fksteer builds,
	// Alpha^2 + Sigma^2 = 1 and the data's contribution is negligible or zero. An
	// image-to-image run starts from Alpha*Init + Sigma*z instead (diffusers' add_noise). Every
	// slot draws its own z, so streams stay aligned even when the group then shares slot 0's.
	for row := range r.rows {
		x := r.pop.Row(row)
		r.streams.FillNormal(row, x)
		if cfg.Init != nil {
			noisy(x, cfg.Init, levels[0])
		}
	}
	if cfg.SharedStart {
		for g := range r.groups {
			x := r.pop.GroupX(g)
			for k := 1; k < r.k; k++ {
				copy(x[k*r.dim:(k+1)*r.dim], x[:r.dim])
			}
		}
	}
	r.mean = make([]float32, r.rows*r.dim)
	r.noise = make([]float32, r.rows*r.dim)
	r.imgs = pixels.NewImages(r.rows, info.ImageChannels, info.ImageHeight, info.ImageWidth)
	r.scores = make([]float64, r.rows)
	if cfg.Reward != nil {
		r.parts = make([][]rewards.PartScore, r.rows)
		_, r.explains = cfg.Reward.(rewards.Explainer)
	}
	r.parents = make([]int, r.k)
	if cfg.Method == FK {
		if r.pot, err = potentials.New(r.pop, cfg.Potential); err != nil {
			return nil, err
		}
		evals := cfg.Resampling.Evaluations(n)
		r.pop.ReserveEvents(r.groups * evals)
		r.ess = make([]ESSPoint, 0, evals)
		r.essBuf = make([]float64, r.groups*evals)
		r.resampledBuf = make([]bool, r.groups*evals)
		r.parentsAll = make([]int, r.rows)
	}
	return r, nil
}

// noisy overwrites the noise z in x with Alpha*x0 + Sigma*z, a state at level l whose clean
// part is x0.
func noisy(x, x0 []float32, l schedule.Level) {
	for i, z := range x {
		x[i] = float32(l.Alpha*float64(x0[i]) + l.Sigma*float64(z))
	}
}

// secondOrder reports whether DPM-Solver++(2M) takes its second-order step at step i of the n
// steps the run walks, onto level to. As diffusers' DPMSolverMultistepScheduler (solver_order
// 2) it does not: at the run's first step, image-to-image included, which has no previous
// prediction; onto a clean level (final_sigmas_type "zero"); and at the last step of a schedule
// of fewer than 15 steps (lower_order_final). diffusers counts the whole schedule there,
// cfg.Steps, even when an image-to-image run walks only its end.
func (r *run) secondOrder(i, n int, to schedule.Level) bool {
	return i > 0 && !to.Clean() && !(i == n-1 && r.cfg.Steps < 15)
}

// sharePrefix makes every slot of every group continue from slot 0's state after step, recorded
// in the genealogy as a resampling from slot 0.
func (r *run) sharePrefix(step int) error {
	zeros := make([]int, r.k)
	r.pop.ReserveEvents(r.groups)
	for g := range r.groups {
		if err := r.pop.Resample(step, g, zeros); err != nil {
			return err
		}
	}
	return nil
}

// score decodes states and scores all rows in one reward call. With preview, a Previewer
// pipeline decodes them with Preview. With parts, each row's breakdown is written there too
// (rewards.Explain's convention). Unless anyNaN, a group without a single finite score is an
// error: its weights (FK) or its choice (best-of-N) would rest on nothing.
func (r *run) score(ctx context.Context, states []float32, preview bool, parts [][]rewards.PartScore, anyNaN bool) error {
	if err := r.decode(ctx, states, preview); err != nil {
		return err
	}
	start := time.Now()
	var err error
	if e, ok := r.cfg.Reward.(rewards.Explainer); ok && parts != nil {
		err = e.Explain(ctx, r.imgs, r.cfg.Prompt, r.scores, parts)
	} else {
		err = r.cfg.Reward.Score(ctx, r.imgs, r.cfg.Prompt, r.scores)
		if parts != nil {
			name := r.cfg.Reward.Name()
			for row, s := range r.scores {
				parts[row] = append(parts[row][:0], rewards.PartScore{Name: name, Weight: 1, Score: s})
			}
		}
	}
	r.rewardTime += time.Since(start)
	r.rewardCalls++
	if err != nil {
		return rewards.NameError(r.cfg.Reward.Name(), err)
	}
	if anyNaN {
		return nil
	}
	for g := range r.groups {
		finite := false
		for _, s := range r.scores[g*r.k : (g+1)*r.k] {
			if !math.IsNaN(s) && !math.IsInf(s, 0) {
				finite = true
				break
			}
		}
		if !finite {
			return fmt.Errorf("reward %s returned no finite score for any of the %d particles of image %d: check the reward's model and options", r.cfg.Reward.Name(), r.k, g)
		}
	}
	return nil
}

// decode turns every row of states into r.imgs, with the pipeline's preview decoder when
// preview is set and the pipeline has one.
func (r *run) decode(ctx context.Context, states []float32, preview bool) error {
	if preview && r.previewer != nil {
		return r.previewer.Preview(ctx, r.model, states, r.rows, r.imgs)
	}
	return r.p.Decode(ctx, r.model, states, r.rows, r.imgs)
}

// reweight scores the x0 predictions (previews, where the pipeline has them) and multiplies
// each particle's weight by its potential.
func (r *run) reweight(ctx context.Context, step, n int) error {
	if err := r.score(ctx, r.x0, true, nil, false); err != nil {
		return err
	}
	lambda := r.lambda(step, n)
	for g := range r.groups {
		if err := r.pot.Reweight(g, r.scores[g*r.k:(g+1)*r.k], lambda, false, nil); err != nil {
			return err
		}
	}
	return nil
}

// resample resamples the groups whose schedule (and ESS) say so and records the ESS.
func (r *run) resample(step int, si *StepInfo) error {
	off := len(r.ess) * r.groups
	point := ESSPoint{Step: step, ESS: r.essBuf[off : off+r.groups], Resampled: r.resampledBuf[off : off+r.groups]}
	for g := range r.groups {
		ess, resampled, err := r.cfg.Resampling.MaybeResample(r.pop, r.cfg.Resampler, r.streams.Resampler(g), step, g, r.parents)
		if err != nil {
			return fmt.Errorf("resample image %d (the reward gave no particle a finite potential; is lambda too large?): %w", g, err)
		}
		point.ESS[g], point.Resampled[g] = ess, resampled
		dst := r.parentsAll[g*r.k : (g+1)*r.k]
		if resampled {
			r.resamplings++
			copy(dst, r.parents)
		} else {
			for k := range dst {
				dst[k] = k
			}
		}
	}
	r.ess = append(r.ess, point)
	si.Evaluated, si.Rewards, si.ESS, si.Resampled = true, r.scores, point.ESS, point.Resampled
	si.Images, si.Parents = r.imgs, r.parentsAll
	return nil
}

// lambda is the potential scale at an evaluation step, following the lambda ramp over the
// schedule's evaluations.
func (r *run) lambda(step, n int) float64 {
	i, _ := r.cfg.Resampling.Evaluation(step, n)
	return r.cfg.Lambda.At(i, r.cfg.Resampling.Evaluations(n))
}

// finish decodes the final states of a run of n steps, applies the final reward and potential,
// and selects outputs.
func (r *run) finish(ctx context.Context, n int) (*Result, error) {
	cfg := r.cfg
	res := &Result{Rewards: make([]float64, r.rows), LogWeights: make([]float64, r.rows)}
	if cfg.Reward != nil {
		// A base run's final rewards are only reported, so a group of NaN scores is data (a
		// dataset records it as null), not a reason to lose the run.
		if err := r.score(ctx, r.pop.X, false, r.parts, cfg.Method == Base); err != nil {
			return nil, fmt.Errorf("final reward: %w", err)
		}
		copy(res.Rewards, r.scores)
	} else {
		if err := r.decode(ctx, r.pop.X, false); err != nil {
			return nil, err
		}
		for i := range res.Rewards {
			res.Rewards[i] = math.NaN()
		}
	}
	if cfg.Method == FK {
		// The final potential divides out everything applied along each ancestry, so the weighted
		// population targets p(x0) exp(lambda r(x0)).
		lambda := r.lambda(n-1, n)
		for g := range r.groups {
			if err := r.pot.Reweight(g, r.scores[g*r.k:(g+1)*r.k], lambda, true, nil); err != nil {
				return nil, err
			}
			logw := r.pop.GroupLogW(g)
			z := particles.LogSumExp(logw)
			for k := range logw {
				res.LogWeights[g*r.k+k] = logw[k] - z
			}
		}
	}
	res.All, res.Parts = r.imgs, r.parts
	for i := range r.pop.NumEvents() {
		res.Events = append(res.Events, r.pop.Event(i))
	}
	if r.rec != nil {
		res.Trajectories = r.rec.finish(r.pop.X, r.pop)
	}
	var picks []int
	for g := range r.groups {
		switch cfg.Select {
		case SelectAll:
			for k := range r.k {
				picks = append(picks, g*r.k+k)
			}
		case SelectBest:
			best := g * r.k
			for row := g * r.k; row < (g+1)*r.k; row++ {
				if res.Rewards[row] > res.Rewards[best] || math.IsNaN(res.Rewards[best]) && !math.IsNaN(res.Rewards[row]) {
					best = row
				}
			}
			picks = append(picks, best)
		case SelectSample:
			if err := particles.Multinomial.Resample(r.streams.Resampler(g), res.LogWeights[g*r.k:(g+1)*r.k], r.parents[:1]); err != nil {
				return nil, fmt.Errorf("select image %d by weight: %w", g, err)
			}
			picks = append(picks, g*r.k+r.parents[0])
		}
	}
	size := r.imgs.Len()
	res.Images = pixels.NewImages(len(picks), r.imgs.C, r.imgs.H, r.imgs.W)
	for i, row := range picks {
		copy(res.Images.At(i), r.imgs.Pix[row*size:(row+1)*size])
		g := row / r.k
		out := Output{Group: g, Particle: row % r.k, Seed: cfg.Seed + uint64(g), Reward: res.Rewards[row], LogWeight: res.LogWeights[row], Roots: r.k}
		if cfg.Method == FK {
			out.Roots = r.pop.DistinctRoots(g)
		}
		if r.explains {
			out.Parts = r.parts[row]
		}
		res.Outputs = append(res.Outputs, out)
	}
	return res, nil
}
