package sampler

import (
	"fmt"
	"math"

	"github.com/fksteer/fksteer/internal/enum"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/schedule"
)

// Method is a steering method.
type Method string

// Steering methods.
const (
	// Base draws K independent samples.
	Base Method = "base"
	// BestOfN draws K independent samples and keeps the best by final reward.
	BestOfN Method = "bon"
	// FK is Feynman-Kac steering: K particles reweighted by reward potentials and resampled.
	FK Method = "fk"
	// SVDD is soft value-based decoding: at every step each particle draws M candidate next
	// states and keeps the best by the reward of their x0 predictions (or one drawn by it).
	SVDD Method = "svdd"
	// Beam is beam search over paths: B beams branch into C children at every branch step and
	// the best B children, by the reward of their x0 predictions, go on.
	Beam Method = "beam"
	// DTS is Diffusion Tree Sampling: a tree of states with soft values, grown by rollouts,
	// whose final samples descend from the root in proportion to exp(lambda v); it samples
	// p(x0) exp(lambda r(x0)) / Z as its iterations grow.
	DTS Method = "dts"
	// DTSStar is DTS*, the optimiser: the tree descends by an upper confidence bound and the
	// final samples greedily by value.
	DTSStar Method = "dts-star"
	// Noise is zero-order search in noise space: a pivot x_T, N neighbours on the shell around
	// it solved deterministically each round, the pivot moving to the best.
	Noise Method = "noise"
	// Random is random search: N initial noises solved deterministically, the best kept (noise
	// search's first round).
	Random Method = "random"
)

// Methods lists every method, in the order tables and help texts show them.
func Methods() []Method { return []Method{Base, BestOfN, FK, SVDD, Beam, DTS, DTSStar, Noise, Random} }

// ParseMethod turns a method name into a Method, by [enum.Parse]'s rule.
func ParseMethod(s string) (Method, error) { return enum.Parse("method", s, Methods()...) }

// Selection says which final particles a run returns.
type Selection string

// Selections.
const (
	// SelectBest returns each group's particle with the highest final reward (or the first
	// particle when there is no reward).
	SelectBest Selection = "best"
	// SelectAll returns every particle.
	SelectAll Selection = "all"
	// SelectSample returns one particle per group drawn by its final weight.
	SelectSample Selection = "sample"
)

// ParseSelection turns a name into a Selection, by [enum.Parse]'s rule.
func ParseSelection(s string) (Selection, error) {
	return enum.Parse("selection", s, SelectBest, SelectAll, SelectSample)
}

// Config is one sampling run: Images independent groups of Particles particles each, all in one
// model batch. Group g uses seed Seed+g, so image g of a run can be reproduced alone.
type Config struct {
	Prompt   string
	CondOpts pipelines.CondOptions
	// Steps is the number of steps of the pipeline's schedule, p.Schedule(Steps). A run walks all
	// of them, or with Init the last StepsWalked() of them.
	Steps    int
	Guidance float64
	Rule     schedule.Rule
	// Eta is the noise of ddim and euler-a, and the noise level a of the flow-sde rules, where 0
	// means schedule.DefaultFlowSDENoise (Validate fills it in); the other rules ignore it.
	Eta    float64
	Seed   uint64
	Images int
	// Particles is K, the rows each image's method carries and returns: the particles of base,
	// bon, fk and svdd, the beams of beam, the samples dts and dts-star draw from their tree and
	// the best samples noise and random keep. A budget sets it for base, bon, fk and beam.
	Particles int
	// Method is the steering or search method ("": base); one file each in this package.
	Method     Method
	Reward     rewards.Reward
	Potential  potentials.Kind
	Lambda     potentials.Lambda
	Resampling potentials.Schedule
	Resampler  particles.Scheme
	Select     Selection
	// Observer, if set, is called with each step's statistics: after every step (every step of
	// every round for noise and random; for dts, at the depths of the chosen paths after the
	// search; Config.Observations counts the calls).
	Observer func(StepInfo)
	// Record keeps every state, step mean and std and step log-probability (Result.Trajectories),
	// for fine-tuning datasets. It costs memory proportional to steps x rows and nothing when off.
	Record bool
	// SharedStart starts every particle of a group from the same initial noise x_T (slot 0's),
	// as D3PO's pairs need; the particles still step with their own noise.
	SharedStart bool
	// SharedPrefix, when positive, makes the particles of a group share their trajectory up to
	// step SharedPrefix: after that step every slot continues from slot 0's state (recorded as a
	// resampling from slot 0, so the prefix is stored once). Not with FK. It counts the steps
	// the run walks (fewer than Steps with Init).
	SharedPrefix int
	// Init, when set, starts the run from a clean state instead of pure noise (image-to-image):
	// Info().Len() values, shared by every particle of every group (an ImageEncoder pipeline
	// makes them from an image). Each particle starts at Alpha*Init + Sigma*z at the first level
	// it walks, z from its own stream, so results stay independent of batching.
	Init []float32
	// Strength, in (0, 1], is how much of the schedule an Init run walks, as in diffusers'
	// image-to-image pipelines: the last min(int(Steps*Strength), Steps) steps. 1 starts from
	// the noisiest level (Init barely shows); smaller values keep more of Init. Required with
	// Init, and only with Init.
	Strength float64
	// Search holds the compute budget and the settings of the search methods.
	Search Search
}

// Search is the compute budget any method can be sized by and the settings of the search
// methods beyond FK. Zero values mean the defaults given with each field.
type Search struct {
	// Budget, when positive, is the compute allowed per image in NFE (denoiser rows; a state
	// evaluated with classifier-free guidance counts 2). It sizes the method's width, the
	// largest that fits: Particles (K) for base, bon and fk and B for beam; M for svdd; the
	// rounds of noise (one round of fewer noises when a round of Neighbours does not fit), the
	// noises of random and the iterations of dts and dts-star. A method never spends more than
	// its budget (steps that draw no noise leave candidates unused).
	Budget int `json:"budget,omitempty"`
	// Candidates is svdd's M, the candidates each particle draws at every stochastic step (0:
	// 4), and beam's C, the children of each beam at a branch step (0: 2).
	Candidates int `json:"candidates,omitempty"`
	// Alpha is svdd's temperature: 0 keeps each particle's best candidate (an optimiser); alpha
	// > 0 draws one with probability proportional to exp(r/alpha).
	Alpha float64 `json:"alpha,omitempty"`
	// Every is beam's branch interval: beams branch at steps Every, 2*Every, ... (0: 1).
	Every int `json:"beam_every,omitempty"`
	// Neighbours is noise's N, the noises solved each round (0: 4), and Rounds its number of
	// rounds (0: 4). Scale is the step from the pivot, s in x_T + s*eps (0: 0.5), the
	// neighbour then rescaled to the pivot's norm.
	Neighbours int     `json:"neighbours,omitempty"`
	Rounds     int     `json:"rounds,omitempty"`
	Scale      float64 `json:"noise_scale,omitempty"`
	// Iterations is the number of descents of dts and dts-star, revisits of a leaf included
	// (0: 16, or what the budget pays for).
	Iterations int `json:"iterations,omitempty"`
	// Widening is the exponent a of the progressive widening of dts and dts-star: a node
	// visited N times may have ceil((N+1)^a) children (0: 1 for dts, whose draw is then exact
	// self-normalised importance sampling over the rollouts; 0.5 for dts-star, whose deeper
	// tree refines its best paths). Below 1, dts's draw leans toward the prior until the tree
	// is large (dts.go).
	Widening float64 `json:"widening,omitempty"`
	// Exploration is dts-star's UCT constant c (0: 1).
	Exploration float64 `json:"exploration,omitempty"`
}

// StepsWalked is the number of steps a run walks and calls the model for: Steps, or for an
// image-to-image run (Init set) diffusers' init_timestep, min(int(Steps*Strength), Steps). Step
// indices everywhere else (SharedPrefix, the FK schedule, StepInfo, Trajectories, Stats.Steps)
// count these steps.
func (c Config) StepsWalked() int {
	if c.Init == nil {
		return c.Steps
	}
	return min(int(float64(c.Steps)*c.Strength), c.Steps)
}

// ConfigError reports a Config that cannot run: a setting out of its valid range or settings
// that contradict each other. It is a mistake in what the caller asked for, not a failure of the
// model or the machine, so retrying cannot help; front ends report it as bad usage (the CLI exits
// with code 2). Its message names the setting, its valid range and the flag that sets it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// invalid returns a *ConfigError with a formatted message.
func invalid(format string, args ...any) error {
	return &ConfigError{fmt.Errorf(format, args...)}
}

// finite reports whether x is neither NaN nor infinite.
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Validate fills defaults for unset fields (sampler, the flow-sde noise level, method,
// selection, resampler) and reports the first setting that cannot work, naming the fix. Run
// calls it; callers that prepare many configurations (batch items) call it up front. Every
// error it returns is a [*ConfigError].
func (c *Config) Validate() error {
	if c.Steps <= 0 {
		return invalid("steps must be positive (got %d)", c.Steps)
	}
	if c.Images <= 0 {
		return invalid("number of images must be positive (got %d)", c.Images)
	}
	if c.Search.Budget > 0 && c.Method.SizedByBudget() && c.Particles == 0 {
		c.Particles = 1 // ValidateFor sizes it from the budget
	}
	if c.Particles <= 0 {
		return invalid("number of particles must be positive (got %d)", c.Particles)
	}
	// Image g uses seed Seed+g: a seed so large that this wraps around would silently repeat
	// the images of seed 0, 1, ...
	if last := uint64(c.Images - 1); c.Seed > math.MaxUint64-last {
		return invalid("seed %d with %d images wraps around (image i uses seed+i): the largest usable seed is %d (--seed)", c.Seed, c.Images, uint64(math.MaxUint64)-last)
	}
	// NaN and infinite settings would reach the model and come back as NaN outputs, which read
	// like a broken model; negative noise is not a noise level.
	if !finite(c.Eta) || c.Eta < 0 {
		return invalid("eta %g is not a noise level: it must be a finite number >= 0 (--eta; 0 = deterministic, 1 = DDPM-like)", c.Eta)
	}
	if !finite(c.Guidance) {
		return invalid("guidance %g is not a finite number (--guidance; values <= 1 turn guidance off)", c.Guidance)
	}
	if c.Rule == "" {
		c.Rule = schedule.EulerRule
	}
	c.Eta = c.Rule.Eta(c.Eta)
	if c.Method == "" {
		c.Method = Base
	}
	if _, ok := methods[c.Method]; !ok {
		_, err := ParseMethod(string(c.Method))
		return &ConfigError{err}
	}
	if c.Select == "" {
		c.Select = SelectAll
		if c.Method != Base {
			c.Select = SelectBest
		}
	}
	if c.Resampler == "" {
		c.Resampler = particles.Systematic
	}
	if c.Method != Base && c.Reward == nil {
		return invalid("method %s needs a reward (--reward)", c.Method)
	}
	if err := c.validateSearch(); err != nil {
		return err
	}
	switch c.Method {
	case SVDD, Beam, DTS, DTSStar:
		if !c.Rule.Stochastic(c.Eta) {
			return invalid("%s needs a stochastic sampler: %s with eta %g draws no noise, so every candidate would be the same state (use --sampler ddim --eta 1)", c.Method, c.Rule, c.Eta)
		}
	case Noise, Random:
		if c.Rule.Stochastic(c.Eta) {
			return invalid("%s search solves each noise deterministically: %s with eta %g draws noise at every step (use --sampler euler, or ddim with --eta 0)", c.Method, c.Rule, c.Eta)
		}
	}
	if c.Method != Base && c.Method != BestOfN && c.Method != FK && (c.SharedStart || c.SharedPrefix > 0) {
		return invalid("a shared start or trajectory prefix (D3PO and GRPO exports) works with base, bon and fk only, not %s", c.Method)
	}
	if c.Method == DTS || c.Method == DTSStar {
		if !finite(c.Lambda.Value) || c.Lambda.Value <= 0 {
			return invalid("%s needs a lambda > 0 (--lambda; its values are soft maxima at temperature 1/lambda), got %g", c.Method, c.Lambda.Value)
		}
		if c.Lambda.Ramp != "" && c.Lambda.Ramp != potentials.Constant {
			return invalid("%s takes one lambda, not a ramp (--lambda-start and --lambda-ramp are FK's)", c.Method)
		}
	}
	if c.Method == FK {
		if !c.Rule.Stochastic(c.Eta) {
			return invalid("FK steering needs a stochastic sampler: %s with eta %g draws no noise, so resampled copies would stay identical (use --sampler ddim --eta 1)", c.Rule, c.Eta)
		}
		if err := c.validateResampling(); err != nil {
			return err
		}
		if !finite(c.Lambda.Value) {
			return invalid("lambda %g is not a finite number (--lambda)", c.Lambda.Value)
		}
		if err := c.Lambda.Validate(); err != nil {
			return &ConfigError{err}
		}
	}
	if c.Init != nil {
		if !(c.Strength > 0 && c.Strength <= 1) {
			return invalid("an initial image needs a strength in (0, 1] (--strength, got %g)", c.Strength)
		}
		if c.StepsWalked() == 0 {
			return invalid("strength %g of %d steps walks no step (int(steps*strength) = 0): raise --strength or --steps", c.Strength, c.Steps)
		}
	} else if c.Strength != 0 {
		return invalid("strength %g (--strength) applies only to a run from an initial image", c.Strength)
	}
	if n := c.StepsWalked(); c.SharedPrefix < 0 || c.SharedPrefix >= n {
		return invalid("shared prefix %d must be between 0 and the steps walked minus 1 (%d)", c.SharedPrefix, n-1)
	}
	if c.SharedPrefix > 0 && c.Method == FK {
		return invalid("a shared trajectory prefix cannot be combined with FK resampling")
	}
	if c.Select == SelectSample && c.Method != FK {
		return invalid("selection by weight needs --method fk")
	}
	return nil
}

// validateResampling checks the FK schedule against the run's steps, naming the flags. Steps are
// 0-based, so the last is Steps-1. An image-to-image run walks only the last StepsWalked() of
// them; its schedule counts those, and evaluations past its last step do not happen
// (potentials.Schedule), so the bound is the whole schedule's, which default schedules scaled
// to --steps always meet.
func (c *Config) validateResampling() error {
	s, last := c.Resampling, c.Steps-1
	switch {
	case s.Every <= 0:
		return invalid("resampling interval %d must be at least 1 step (--resample-every)", s.Every)
	case s.Start < 0 || s.Start > last:
		return invalid("first resampling step %d is outside the run's steps 0..%d (--resample-start; steps count from 0)", s.Start, last)
	case s.End < s.Start || s.End > last:
		return invalid("last resampling step %d must lie between the first, %d, and the run's last step, %d (--resample-end; steps count from 0)", s.End, s.Start, last)
	case !(s.ESSThreshold >= 0 && s.ESSThreshold <= 1):
		return invalid("ESS threshold %g must be a fraction of the particles in [0, 1] (--ess-threshold; 0 resamples at every evaluation)", s.ESSThreshold)
	}
	if err := s.Validate(); err != nil {
		return &ConfigError{err}
	}
	return nil
}

// ValidateFor is [Config.Validate] followed by the checks that need the model: a class override
// (CondOpts.Class) must be one of a class-conditional model's classes or its null class, and
// an initial state must have the model's size. Run calls it before any model call.
func (c *Config) ValidateFor(info pipelines.Info) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := c.size(info); err != nil {
		return err
	}
	if cl := c.CondOpts.Class; cl != nil {
		if info.Conditioning != pipelines.ClassCond {
			return invalid("class %d (--class) applies only to class-conditional models; %s is conditioned on %s: say what to draw in the prompt", *cl, info.Name, condName(info.Conditioning))
		}
		if n := int64(len(info.Classes)); (*cl < 0 || *cl >= n) && *cl != info.NullClass {
			return invalid("class %d (--class) is not one of %s's classes: 0..%d, or %d for an unconditional sample", *cl, info.Name, n-1, info.NullClass)
		}
	}
	if c.Init != nil && len(c.Init) != info.Len() {
		return invalid("initial state of %d values for model %s, whose states have %d (%dx%dx%d)", len(c.Init), info.Name, info.Len(), info.Channels, info.Height, info.Width)
	}
	return nil
}

// condName says in words what a model is conditioned on.
func condName(k pipelines.CondKind) string {
	switch k {
	case pipelines.VectorCond:
		return "text"
	case pipelines.Unconditioned:
		return "nothing (it is unconditional)"
	}
	return string(k)
}

// Output is one returned sample.
type Output struct {
	Group, Particle int
	Seed            uint64
	// Reward is the final reward (NaN when the run had none).
	Reward float64
	// LogWeight is the particle's final log-weight, normalised within its group (FK only; 0 otherwise).
	LogWeight float64
	// Roots is how many distinct initial particles the group's final particles descend from.
	Roots int
	// Parts breaks the final reward down where the reward explains itself (rewards.Explainer):
	// a composite's weighted parts, each with its own score, and the text an OCR reward read.
	// Nil for other rewards.
	Parts []rewards.PartScore
}

// Result is what a run produced: enough that a consumer (a fine-tuning exporter, a contact
// sheet, a report) never runs a model again to learn what the run already knew, namely the
// conditioning it used, every particle's final reward and its parts, the genealogy, and the
// settings as resolved.
type Result struct {
	// Images holds the selected outputs, in Outputs order.
	Images  pixels.Images
	Outputs []Output
	// Rewards and LogWeights hold the final reward and normalised log-weight of every particle,
	// row g*K+k. Rewards are NaN where the run had no reward.
	Rewards, LogWeights []float64
	// Parts[row] breaks Rewards[row] down (rewards.Explain's convention: a composite's weighted
	// parts, the text an OCR part read, or for any other reward the reward itself with weight
	// 1). Nil when the run had no reward. The final images are scored once, with their parts.
	Parts [][]rewards.PartScore
	// All holds the final images of every particle, row g*K+k (Images holds the selected ones).
	All   pixels.Images
	Stats Stats
	// Trajectories is the recording of a run with Config.Record; nil otherwise.
	Trajectories *Trajectories
	// Events is the genealogy: every resampling of every group, in the order they happened
	// (particles.Population.Event), FK's and the end of a shared prefix (a resampling from
	// slot 0) alike. Parents are slots within the group.
	Events []particles.Event
	// Cond is the conditioning the model was given: the prompt's (and the negative prompt's)
	// embeddings or class ids.
	Cond pipelines.Cond
	// Model describes the model that sampled (the pipeline's Info).
	Model pipelines.Info
	// Settings is the configuration as the run resolved it (Config.Validate's defaults filled
	// in: the rule, the flow-sde noise level, the method, the selection, the resampler).
	Settings Config
}
