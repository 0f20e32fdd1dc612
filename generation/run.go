package generation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/disintegration/imaging"

	"github.com/fksteer/fksteer/generation/sheet"
	"github.com/fksteer/fksteer/internal/filehash"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// Run is a Spec resolved against an Env: the open model, the reward, and the sampler's
// configuration of the whole spec. It samples the spec's images, all at once or in chunks,
// and is safe for concurrent use.
type Run struct {
	// Spec is the spec with its fixed defaults filled in.
	Spec Spec
	// Model is the spec's model; it belongs to the Env.
	Model pipelines.Pipeline
	// Config is the sampler configuration of all Spec.Images images: the model's defaults
	// applied, the reward built, the FK schedule scaled to the steps. Init (the encoded start
	// image) is filled when the first images are sampled.
	Config sampler.Config

	env       *Env
	closeOnce sync.Once
	initHash  string // hex sha256 of the init image file
	initOnce  sync.Once
	initErr   error
}

// Prepare checks s and resolves it against e: opens (or reuses) its model and reward, fills the
// model's defaults and checks every setting and limit before any sampling, so that a run that
// cannot finish is refused before it starts. A spec the user must change fails with a
// *SpecError or a *sampler.ConfigError.
func (e *Env) Prepare(ctx context.Context, s Spec) (*Run, error) {
	s = s.withDefaults()
	if err := e.checkSpec(s); err != nil {
		return nil, err
	}
	m, err := e.model(s, true)
	if err != nil {
		return nil, err
	}
	p := m.p
	ok := false
	defer func() {
		if !ok {
			e.release(p)
		}
	}()
	r := &Run{Spec: s, Model: p, env: e}
	if r.Config, err = e.config(s, p.Info()); err != nil {
		return nil, err
	}
	if s.InitImage != "" {
		if _, ok := p.(pipelines.ImageEncoder); !ok {
			return nil, &SpecError{fmt.Errorf("model %s cannot start from an image: --init-image needs a Stable Diffusion export (its VAE encoder)", p.Info().Name)}
		}
		if r.initHash, _, err = filehash.SHA256(s.InitImage); err != nil {
			return nil, &SpecError{fmt.Errorf("init image: %w", err)}
		}
	}
	// The whole run at once, so that what only the last chunk would meet (a seed that wraps
	// around before the last image) is refused before the first.
	if err := r.withInit().ValidateFor(p.Info()); err != nil {
		return nil, err
	}
	if err := e.checkMemory(r); err != nil {
		return nil, err
	}
	ok = true
	return r, nil
}

// Generate prepares s and samples all its images: Prepare, Sample and Close in one call, for a
// program that wants a spec's images and nothing in between.
func (e *Env) Generate(ctx context.Context, s Spec) (*Result, error) {
	r, err := e.Prepare(ctx, s)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Sample(ctx, 0, r.Spec.Images, nil)
}

// Close lets the Env close the Run's model again to make room for others (Env.ModelBytes);
// the Run must not sample after it. Closing twice is harmless.
func (r *Run) Close() {
	r.closeOnce.Do(func() { r.env.release(r.Model) })
}

// checkText refuses text no encoder reads or PNG can record, and text over the limit.
func checkText(text, what string, limit int) error {
	if strings.ContainsRune(text, 0) {
		return &SpecError{fmt.Errorf("%s contains a NUL character, which no text encoder reads and PNG text cannot record: remove it", what)}
	}
	if n := utf8.RuneCountInString(text); n > limit {
		return &SpecError{fmt.Errorf("%s is %d characters, over the limit of %d (text encoders read the first 77 tokens): shorten it, or raise --max-prompt-chars", what, n, limit)}
	}
	return nil
}

// config turns a spec into the sampler configuration of all its images, filling the model's
// defaults for what the spec leaves unset.
func (e *Env) config(s Spec, info pipelines.Info) (sampler.Config, error) {
	return configWith(s, info, func() (rewards.Reward, error) { return e.Reward(s.Reward, info) })
}

// configWith is config with the spec's reward built by reward, called only when the spec names
// one.
func configWith(s Spec, info pipelines.Info, reward func() (rewards.Reward, error)) (sampler.Config, error) {
	cfg := sampler.Config{
		Prompt:    s.Prompt,
		Steps:     info.Defaults.Steps,
		Guidance:  info.Defaults.Guidance,
		Eta:       info.Defaults.Eta,
		Seed:      s.Seed,
		Particles: s.Particles,
		Images:    s.Images,
	}
	if s.Steps > 0 {
		cfg.Steps = s.Steps
	}
	if s.Guidance != nil {
		cfg.Guidance = *s.Guidance
	}
	if s.Eta != nil {
		cfg.Eta = *s.Eta
	}
	cfg.CondOpts.Class = s.Class
	var err error
	cfg.Rule = cmp.Or(info.Defaults.Sampler, schedule.EulerRule)
	if s.Sampler != "" {
		if cfg.Rule, err = schedule.ParseRule(s.Sampler); err != nil {
			return cfg, &SpecError{err}
		}
	}
	if s.Method == "" {
		cfg.Method = sampler.DefaultMethod(s.Reward != "", cfg.Rule.Stochastic(cfg.Rule.Eta(cfg.Eta)))
	} else if cfg.Method, err = sampler.ParseMethod(s.Method); err != nil {
		return cfg, &SpecError{err}
	}
	if s.Select != "" {
		if cfg.Select, err = sampler.ParseSelection(s.Select); err != nil {
			return cfg, &SpecError{err}
		}
	} else {
		// sampler.Run's own default, made explicit so the parameters chunk records it.
		cfg.Select = sampler.SelectBest
		if cfg.Method == sampler.Base {
			cfg.Select = sampler.SelectAll
		}
	}
	if cfg.Resampler, err = particles.ParseScheme(s.Resampler); err != nil {
		return cfg, &SpecError{err}
	}
	if cfg.Potential, err = potentials.ParseKind(s.Potential); err != nil {
		return cfg, &SpecError{err}
	}
	ramp, err := potentials.ParseRamp(s.LambdaRamp)
	if err != nil {
		return cfg, &SpecError{err}
	}
	cfg.Lambda = potentials.Lambda{Value: *s.Lambda, Start: s.LambdaStart, Ramp: ramp}
	if err := cfg.Lambda.Validate(); err != nil {
		return cfg, &SpecError{err}
	}
	cfg.Search = sampler.Search{Budget: s.Budget, Candidates: s.Candidates, Alpha: s.Alpha, Every: s.BeamEvery,
		Neighbours: s.Neighbours, Rounds: s.Rounds, Scale: s.NoiseScale, Iterations: s.Iterations,
		Widening: s.Widening, Exploration: s.Exploration}
	if s.Budget > 0 && s.Particles > 1 && cfg.Method.SizedByBudget() {
		return cfg, &SpecError{fmt.Errorf("a budget of %d NFE sizes the particles of %s: set --budget or --particles, not both", s.Budget, cfg.Method)}
	}
	cfg.Resampling = resampling(cfg.Steps, s.ResampleEvery, s.ResampleStart, s.ResampleEnd)
	cfg.Resampling.ESSThreshold = s.ESSThreshold
	if s.Reward != "" {
		if cfg.Reward, err = reward(); err != nil {
			return cfg, err
		}
	}
	if info.Negative {
		cfg.CondOpts.Negative = s.NegativePrompt
	} else if s.NegativePrompt != "" && cfg.Guidance > 1 {
		return cfg, &SpecError{fmt.Errorf("model %s takes no negative prompt (guidance %g would ignore it): remove the negative prompt or set --guidance 1", info.Name, cfg.Guidance)}
	}
	// Catch settings that cannot work (FK with a deterministic sampler, ...) before any sampling.
	if err := cfg.ValidateFor(info); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// resampling builds the FK schedule from the resample-every/start/end settings, where 0 (every)
// and nil (start, end) mean "scaled to the step count" (potentials.ScaledSchedule).
func resampling(steps, every int, start, end *int) potentials.Schedule {
	auto := potentials.ScaledSchedule(steps)
	if every == 0 {
		every = auto.Every
	}
	// Automatic values stay within the steps (step steps-1 is the last), so that only a value
	// the user chose can be refused for lying beyond them.
	s := potentials.Schedule{Every: every}
	if start != nil {
		s.Start = *start
	} else {
		s.Start = min(every, max(0, steps-1))
	}
	if end != nil {
		s.End = *end
	} else {
		s.End = max(s.Start, min(auto.End, steps-1))
	}
	return s
}

// Info is the model's description.
func (r *Run) Info() pipelines.Info { return r.Model.Info() }

// StepsWalked is the number of steps each image walks (fewer than Steps from an init image).
func (r *Run) StepsWalked() int {
	c := r.withInit()
	return c.StepsWalked()
}

// Observations is the number of observer calls sampling one chunk makes
// (sampler.Config.Observations), what a progress display counts.
func (r *Run) Observations() int {
	c := r.withInit()
	return c.Observations()
}

// withInit is Config as it will be once the init image is encoded (a zero state of the
// model's size until then), for the checks and counts that come before.
func (r *Run) withInit() *sampler.Config {
	c := r.Config
	if r.Spec.InitImage != "" && c.Init == nil {
		c.Init, c.Strength = make([]float32, r.Model.Info().Len()), r.Spec.Strength
	}
	return &c
}

// Chunk is the configuration of images first..first+n-1 of the spec: image i keeps seed
// Spec.Seed+i, and a group's result does not depend on its chunk (sampler.Run).
func (r *Run) Chunk(first, n int) sampler.Config {
	c := r.Config
	c.Images = n
	c.Seed = r.Config.Seed + uint64(first)
	return c
}

// Sample samples images first..first+n-1 of the spec. observe, if not nil, sees every step.
// With Spec.ContactSheet the result can draw its contact sheets.
func (r *Run) Sample(ctx context.Context, first, n int, observe func(sampler.StepInfo)) (*Result, error) {
	if err := r.encodeInit(ctx); err != nil {
		return nil, err
	}
	cfg := r.Chunk(first, n)
	res := &Result{Run: r, Config: cfg}
	if r.Spec.ContactSheet {
		res.sheets = sheet.NewRecorder(cfg.Particles)
		observe = both(res.sheets.Observe, observe)
	}
	cfg.Observer = observe
	out, err := sampler.Run(ctx, r.Model, cfg)
	if err != nil {
		return nil, err
	}
	res.Result = out
	return res, nil
}

// both calls every non-nil observer.
func both(obs ...func(sampler.StepInfo)) func(sampler.StepInfo) {
	return func(si sampler.StepInfo) {
		for _, o := range obs {
			if o != nil {
				o(si)
			}
		}
	}
}

// encodeInit encodes the start image with the model's image encoder into Config.Init once,
// resized (Lanczos) to the model's image size as diffusers' image processor resizes it. It
// runs with the first images, not in Prepare, so that a batch of image-to-image items holds one
// item's latents at a time.
func (r *Run) encodeInit(ctx context.Context) error {
	if r.Spec.InitImage == "" {
		return nil
	}
	r.initOnce.Do(func() {
		path, info := r.Spec.InitImage, r.Model.Info()
		img, err := rewards.OpenImage(path)
		if err != nil {
			var big *rewards.TooManyPixelsError
			if errors.As(err, &big) {
				r.initErr = fmt.Errorf("init image: %w", err)
			} else {
				r.initErr = &SpecError{fmt.Errorf("init image %s: %w", path, err)}
			}
			return
		}
		imgs := rewards.FromImage(imaging.Resize(img, info.ImageWidth, info.ImageHeight, imaging.Lanczos))
		init := make([]float32, info.Len())
		if err := r.Model.(pipelines.ImageEncoder).Encode(ctx, nil, imgs, init); err != nil {
			r.initErr = fmt.Errorf("init image %s: %w", path, err)
			return
		}
		r.Config.Init, r.Config.Strength = init, r.Spec.Strength
	})
	return r.initErr
}
