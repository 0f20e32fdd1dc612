package finetune

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// Options configure [Export]. Zero values take the documented defaults.
type Options struct {
	Mode Mode
	// Out is the dataset folder: new, empty, or holding a dataset to resume.
	Out string
	// Prompts are sampled in order, one group each: prompt i becomes group "g%06d" of i, seeded
	// with Sampling.Seed + i, so any group can be reproduced alone and a resumed export draws what
	// an uninterrupted one would have.
	Prompts []string
	// Sampling is how every group is sampled: the settings the mode leaves to the user.
	Sampling Sampling
	// Samples per prompt (N, n, G or K); 0 means Mode.DefaultSamples().
	Samples int
	// Reward scores every final sample; the manifest records each part of a composite
	// (rewards.Composite) beside the total. Required. RewardSpec is the spec it was built from,
	// recorded in the settings so that a resumed export can check it scores the same way.
	Reward     rewards.Reward
	RewardSpec string
	// ShareStart makes a group's samples share x_T (GRPO, Adv-GRPO, PRDP; D3PO always does).
	ShareStart bool
	// SharePrefix, when positive, makes a group's samples share their trajectory up to that step
	// (GRPO, Adv-GRPO).
	SharePrefix int
	// Half stores latents as float16; ShardSize is the shard roll-over size in bytes.
	Half      bool
	ShardSize int64
	// Pairs and TieTolerance shape the pairs of D3PO and PRDP.
	Pairs        PairPolicy
	TieTolerance float64
	// GlobalStd normalises GRPO advantages by the dataset's reward std (Flow-GRPO's global_std).
	GlobalStd bool
	// References maps each prompt to its reference image files (PNG, JPEG or WebP), and Features
	// extracts the image features of samples and references: both required by Adv-GRPO.
	References map[string][]string
	Features   FeatureExtractor
	// Workers is how many groups are sampled at once (0: 1). The dataset does not depend on it.
	Workers int
	// Shard is the part of the prompts this export samples (batch.Shard: every Count-th prompt
	// from Index; zero: all of them). A sharded export only fills its work folder; [Merge] joins
	// the shards' work folders and writes the dataset, byte for byte what one unsharded export
	// writes.
	Shard batch.Shard
	// Progress, if set, is called after every group sampled (from one goroutine at a time).
	Progress func(Progress)
	// Log receives what the batch job decides: resumed groups, groups redone because their
	// files were missing or damaged (nil: discarded).
	Log *slog.Logger
}

// Sampling is how an export samples each group: the settings left to its user. What the mode
// decides (the method, the particles per group, which samples are kept, a shared x_T or prefix,
// recording, the reward given to the sampler) is not here, so nothing set here is overridden:
// Options.Config shows the configuration each group runs with.
type Sampling struct {
	// Steps, Rule, Eta and Guidance are sampler.Config's; a flow-sde rule reads Eta 0 as
	// schedule.DefaultFlowSDENoise.
	Steps    int
	Rule     schedule.Rule
	Eta      float64
	Guidance float64
	// Seed is prompt 0's seed: prompt i is sampled with Seed+i.
	Seed uint64
	// Cond holds the class override and the negative prompt.
	Cond pipelines.CondOptions
	// FK is FK steering's settings: required by mode Steered, refused by the others.
	FK *Steering
}

// Steering is how mode Steered steers: Method (""; FK) and the fields of sampler.Config of the
// same names (Resampler "" is particles.Systematic). Potential, Lambda, Resampling and Resampler
// are FK's (Lambda is also dts's); Search holds the other methods' settings. A budget cannot
// size the particles (--samples does), so it is refused for the methods it would (bon, fk,
// beam).
type Steering struct {
	Method     sampler.Method
	Search     sampler.Search
	Potential  potentials.Kind
	Lambda     potentials.Lambda
	Resampling potentials.Schedule
	Resampler  particles.Scheme
}

// SamplingOf takes from cfg (a front end's resolved configuration, generation.Run.Config) the
// settings an export leaves to its user, FK's for mode Steered only. The rest of cfg (prompt,
// images, particles, method, selection, reward, observer) is the mode's or the export's, and
// is ignored.
func SamplingOf(cfg sampler.Config, m Mode) Sampling {
	s := Sampling{Steps: cfg.Steps, Rule: cfg.Rule, Eta: cfg.Eta, Guidance: cfg.Guidance, Seed: cfg.Seed, Cond: cfg.CondOpts}
	if m == Steered {
		s.FK = &Steering{Method: cfg.Method, Search: cfg.Search, Potential: cfg.Potential, Lambda: cfg.Lambda,
			Resampling: cfg.Resampling, Resampler: cfg.Resampler}
	}
	return s
}

// Progress reports an export's advance after each prompt.
type Progress struct {
	// Done counts the prompts of this export's shard finished (Skipped of them by an earlier
	// run), Total the shard's prompts.
	Done, Skipped, Total int
	Group                string
	// Rewards are the new group's training rewards.
	Rewards []float64
	Elapsed time.Duration
}

// Summary is what an export wrote.
type Summary struct {
	Dir string `json:"dir"`
	// Groups and Samples count everything in the dataset; Skipped the groups a resumed export
	// found written.
	Groups   int      `json:"groups"`
	Samples  int      `json:"samples"`
	Skipped  int      `json:"skipped"`
	Shards   []string `json:"shards"`
	Bytes    int64    `json:"shard_bytes"`
	Complete bool     `json:"complete"`
	// Shard is the part of the prompts a sharded export sampled ("2/4"), empty when it sampled
	// them all; a sharded export writes no dataset (Groups and Samples count its own groups).
	Shard string `json:"shard,omitempty"`
	// Sampled counts the groups this run sampled, Redone those of them that an earlier run had
	// finished but whose files were missing or damaged (the job's log says which and why).
	Sampled int `json:"sampled"`
	Redone  int `json:"redone,omitempty"`
	// NoReward counts the samples whose reward is not a finite number: NaN or infinite scores
	// are stored as null and left out of every mean, std and advantage.
	NoReward int `json:"samples_without_reward"`
}

// settings are what must match for an export to resume a dataset: everything that changes the
// data (not where it is split into shards).
type settings struct {
	Mode         Mode          `json:"mode"`
	Model        string        `json:"model"`
	ModelHash    string        `json:"model_hash"`
	Samples      int           `json:"samples"`
	Scheduler    Scheduler     `json:"scheduler"`
	Seed         uint64        `json:"seed"`
	Class        *int64        `json:"class,omitempty"`
	Reward       rewardSetting `json:"reward"`
	Half         bool          `json:"float16_latents"`
	Pairs        PairPolicy    `json:"pairs,omitempty"`
	TieTolerance float64       `json:"tie_tolerance,omitempty"`
	GlobalStd    bool          `json:"global_std,omitempty"`
	Features     string        `json:"features,omitempty"`
}

type rewardSetting struct {
	Name string `json:"name"`
	Spec string `json:"spec,omitempty"`
}

// GroupID is the ID of group i of a dataset.
func GroupID(i int) string { return fmt.Sprintf("g%06d", i) }

// Validate fills defaults and rejects options the mode cannot use, with the fix in the message.
// Export calls it; callers may call it first to tell bad options from failures of the run.
func (o *Options) Validate() error {
	m, err := ParseMode(string(o.Mode))
	if err != nil {
		return err
	}
	o.Mode = m
	if o.Out == "" {
		return errors.New("no output folder: set the dataset folder (--out)")
	}
	if len(o.Prompts) == 0 {
		return errors.New("no prompts: give at least one (--prompts FILE, one per line)")
	}
	// Prompt i is seeded with Seed+i; past the largest seed that would wrap around to seed 0.
	if last := uint64(len(o.Prompts) - 1); o.Sampling.Seed > math.MaxUint64-last {
		return &sampler.ConfigError{Err: fmt.Errorf("seed %d with %d prompts wraps around (prompt i uses seed+i): the largest usable seed is %d (--seed)", o.Sampling.Seed, len(o.Prompts), uint64(math.MaxUint64)-last)}
	}
	if o.Samples == 0 {
		o.Samples = m.DefaultSamples()
	}
	minimum := 1
	if m.Pairs() || m == GRPO || m == AdvGRPO {
		minimum = 2
	}
	if o.Samples < minimum {
		return fmt.Errorf("mode %s needs at least %d samples per prompt (got %d)", m, minimum, o.Samples)
	}
	if o.Reward == nil {
		return fmt.Errorf("mode %s needs a reward to score samples (--reward)", m)
	}
	rule := o.Sampling.Rule
	if rule == "" {
		rule = schedule.EulerRule
	}
	// The noise level flow-sde uses when none is set, so that what is logged is what is drawn.
	o.Sampling.Eta = rule.Eta(o.Sampling.Eta)
	if !rule.Stochastic(o.Sampling.Eta) {
		return fmt.Errorf("mode %s trains on the log-probability of every denoising step, but sampler %s with eta %g is deterministic, so its steps have no density: use a stochastic sampler (--sampler ddim --eta 1, or ddpm, flow-sde, euler-a with eta > 0)", m, rule, o.Sampling.Eta)
	}
	switch {
	case m == Steered && o.Sampling.FK == nil:
		return errors.New("mode steered needs FK steering settings (Sampling.FK: potential, lambda, resampling schedule)")
	case m != Steered && o.Sampling.FK != nil:
		return fmt.Errorf("FK steering settings are for mode steered, not %s", m)
	case m == Steered && o.Sampling.FK.Method == sampler.Base:
		return errors.New("mode steered exports a steering method's samples: --method base is mode ddpo's")
	case m == Steered && o.Sampling.FK.Search.Budget > 0 && cmp.Or(o.Sampling.FK.Method, sampler.FK).SizedByBudget():
		return fmt.Errorf("a budget would size the particles of %s, which the export's --samples sets: drop --budget", cmp.Or(o.Sampling.FK.Method, sampler.FK))
	}
	if o.ShareStart && !(m == GRPO || m == AdvGRPO || m == PRDP || m == D3PO) {
		return fmt.Errorf("a shared x_T is for modes grpo, adv-grpo, prdp and d3po, not %s", m)
	}
	if o.SharePrefix != 0 && m != GRPO && m != AdvGRPO {
		return fmt.Errorf("a shared trajectory prefix is for modes grpo and adv-grpo, not %s", m)
	}
	if o.GlobalStd && m != GRPO && m != AdvGRPO {
		return fmt.Errorf("the global-std advantage is for modes grpo and adv-grpo, not %s", m)
	}
	if (o.Pairs != "" || o.TieTolerance != 0) && !m.Pairs() {
		return fmt.Errorf("pair options are for modes d3po and prdp, not %s", m)
	}
	if m.Pairs() {
		if o.Pairs == "" {
			o.Pairs = AllPairs
		}
		if o.Pairs, err = ParsePairPolicy(string(o.Pairs)); err != nil {
			return err
		}
	}
	if o.TieTolerance < 0 {
		return fmt.Errorf("tie tolerance must not be negative (got %g)", o.TieTolerance)
	}
	if m == AdvGRPO {
		if o.Features == nil {
			return errors.New("mode adv-grpo needs an image feature model (--dino MODEL.onnx, a DINOv2-style ViT export)")
		}
		for _, p := range o.Prompts {
			if len(o.References[p]) == 0 {
				return fmt.Errorf("mode adv-grpo needs reference images for every prompt; prompt %q has none in the references map (--references FILE)", p)
			}
		}
	} else if o.Features != nil || o.References != nil {
		return fmt.Errorf("reference images and image features are for mode adv-grpo, not %s", m)
	}
	return nil
}

// Config returns the sampler configuration prompt i's group runs with: Sampling, plus what the
// mode decides (one image of Samples particles, all kept and recorded, base sampling or FK,
// shared starts and prefixes) and the reward, which scores the final samples inside the run
// (with their parts) so that nothing is scored twice. Call it after Validate.
func (o *Options) Config(i int) sampler.Config {
	s := o.Sampling
	cfg := sampler.Config{
		Prompt: o.Prompts[i], CondOpts: s.Cond, Steps: s.Steps, Guidance: s.Guidance, Rule: s.Rule, Eta: s.Eta,
		Seed: s.Seed + uint64(i), Images: 1, Particles: o.Samples, Method: sampler.Base, Reward: o.Reward,
		Select: sampler.SelectAll, Record: true,
		SharedStart: o.ShareStart || o.Mode == D3PO, SharedPrefix: o.SharePrefix,
	}
	if fk := s.FK; fk != nil && o.Mode == Steered {
		cfg.Method, cfg.Potential, cfg.Lambda, cfg.Resampling = cmp.Or(fk.Method, sampler.FK), fk.Potential, fk.Lambda, fk.Resampling
		cfg.Search = fk.Search
		// The sampler's default, named so the manifest records it.
		cfg.Resampler = cmp.Or(fk.Resampler, particles.Systematic)
	}
	return cfg
}

// settings returns the settings of an export with p. The scheduler's levels are those of the
// grid the sampler will walk, so that dataset.json names the same family as every manifest row.
func (o *Options) settings(p pipelines.Pipeline) (settings, error) {
	cfg := o.Config(0)
	// The sampler's own checks, before the grid is asked for: a bad step count or strength gets
	// its usual message, and the walked part of the grid below is in range.
	if err := cfg.Validate(); err != nil {
		return settings{}, err
	}
	levels, err := p.Schedule(cfg.Steps)
	if err != nil {
		return settings{}, err
	}
	// An image-to-image run walks only the end of the grid (sampler.Run).
	levels = levels[max(0, len(levels)-cfg.StepsWalked()-1):]
	info := p.Info()
	s := settings{
		Mode: o.Mode, Model: info.Name, ModelHash: info.Hash, Samples: o.Samples,
		Scheduler: schedulerOf(cfg, info, levels), Seed: o.Sampling.Seed, Class: o.Sampling.Cond.Class,
		Half: o.Half, GlobalStd: o.GlobalStd,
	}
	if o.Mode.Pairs() {
		s.Pairs, s.TieTolerance = o.Pairs, o.TieTolerance
	}
	s.Reward = rewardSetting{Name: o.Reward.Name(), Spec: o.RewardSpec}
	if o.Features != nil {
		s.Features = o.Features.Name()
	}
	return s, nil
}

// Export samples every prompt of opts.Shard with p as opts say, records the trajectories and
// writes the dataset into opts.Out, on batch's job machinery: prompt i is the batch item
// GroupID(i), whose task samples its group and writes the group's tensors, rows and images
// into the work folder (WorkDir) with a record holding every file's sha256, using
// opts.Workers workers. An unsharded export then assembles the dataset from the finished
// groups, in group order, so that the dataset depends only on the settings and prompts, never
// on the workers or on interruptions; a sharded one stops there (see [Merge]).
//
// Running it again resumes: groups whose record and files are intact are kept, the rest are
// sampled (a process killed at any moment loses only the groups in flight). The settings must
// be those the dataset was made with (the error names the one that differs), and a prompt
// already sampled must not change; the prompts may grow.
//
// When ctx is cancelled or a group fails, Export stops starting groups, assembles every
// finished one into a dataset marked incomplete (unsharded) and returns ctx's error or the
// group's ("prompt i (...): ..."); the summary is returned too when the job ran.
func Export(ctx context.Context, p pipelines.Pipeline, opts Options) (*Summary, error) {
	start := time.Now()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Shard.Validate(); err != nil {
		return nil, err
	}
	set, err := opts.settings(p)
	if err != nil {
		return nil, err
	}
	jf, err := newJobFile(&opts, set)
	if err != nil {
		return nil, err
	}
	if err := checkDataset(opts.Out, opts.Mode, jf.Settings); err != nil {
		return nil, err
	}
	if err := checkPrompts(opts.Out, opts.Prompts); err != nil {
		return nil, err
	}
	if err := jf.claim(opts.Out); err != nil {
		return nil, err
	}
	ex := &exportJob{o: &opts, p: p, fp: jf.fingerprint(), start: start, rewards: map[string][]float64{}}
	// MaxFailures 0: a group that fails stops the export, as its error is one to fix first.
	job := &batch.Job{
		Dir: WorkDir(opts.Out), Items: items(opts.Prompts), Shard: opts.Shard, Workers: max(1, opts.Workers),
		Prepare: ex.prepare, Fingerprint: ex.fp, Progress: ex, Log: opts.Log,
	}
	bs, err := job.Run(ctx)
	if bs == nil {
		return nil, err
	}
	if ex.err != nil {
		err = ex.err // the failed group's error, with its cause, rather than batch's count of failures
	}
	sum := &Summary{Dir: opts.Out, Skipped: bs.Items.Skipped, Sampled: bs.Items.Generated, Redone: bs.Items.Redone}
	if opts.Shard.Sharded() {
		sum.Shard, sum.Groups = opts.Shard.String(), bs.Items.Finished
		sum.Samples = sum.Groups * opts.Samples
		return sum, err
	}
	if aerr := assemble(opts.Out, jf, sum); aerr != nil {
		return sum, errors.Join(err, aerr)
	}
	return sum, err
}

// maxQuoted bounds the prompt text an error message quotes: a prompt file's line can be a
// megabyte, and an error should stay one readable line.
const maxQuoted = 200

// clip returns s, cut to maxQuoted characters with an ellipsis when longer.
func clip(s string) string {
	r := []rune(s)
	if len(r) <= maxQuoted {
		return s
	}
	return string(r[:maxQuoted]) + "…"
}

func (o *Options) progress(p Progress) {
	if o.Progress != nil {
		o.Progress(p)
	}
}

// sampleGroup samples and records prompt i's group, with features for Adv-GRPO.
func sampleGroup(ctx context.Context, p pipelines.Pipeline, o *Options, i int) (*Group, error) {
	res, err := sampler.Run(ctx, p, o.Config(i))
	if err != nil {
		return nil, err
	}
	groups, err := NewGroups(res, i)
	if err != nil {
		return nil, err
	}
	g := groups[0]
	if !slices.ContainsFunc(g.Stds, func(s float64) bool { return s > 0 }) {
		return nil, fmt.Errorf("every one of the %d steps is deterministic (std 0), so no step has a log-probability: use more steps or a stochastic sampler", g.Steps)
	}
	if o.Mode == AdvGRPO {
		if g.Features, err = o.Features.Extract(ctx, g.Images); err != nil {
			return nil, fmt.Errorf("features of the samples: %w", err)
		}
		g.References = o.References[g.Prompt]
		if g.RefFeatures, err = referenceFeatures(ctx, o.Features, g.References); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// referenceFeatures loads each reference image and extracts its features (one image at a time:
// references need not share a size).
func referenceFeatures(ctx context.Context, fx FeatureExtractor, paths []string) (*Features, error) {
	var all *Features
	for _, path := range paths {
		img, err := rewards.LoadImage(path)
		if err != nil {
			return nil, err
		}
		f, err := fx.Extract(ctx, img)
		if err != nil {
			return nil, fmt.Errorf("features of reference %s: %w", path, err)
		}
		if all == nil {
			all = &Features{Dim: f.Dim, Patches: f.Patches}
		}
		all.N++
		all.CLS = append(all.CLS, f.CLS...)
		all.PatchTokens = append(all.PatchTokens, f.PatchTokens...)
	}
	return all, nil
}
