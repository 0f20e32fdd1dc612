package sampler

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/schedule"
)

func TestParseNames(t *testing.T) {
	if m, err := ParseMethod("bon"); err != nil || m != BestOfN {
		t.Errorf("ParseMethod(bon) = %v, %v", m, err)
	}
	if _, err := ParseSelection("first"); err == nil || !strings.Contains(err.Error(), `unknown selection "first"`) {
		t.Errorf("ParseSelection(first) error = %v", err)
	}
}

func TestValidateNamesTheProblem(t *testing.T) {
	color := rewards.NewColor([3]float64{1, 0, 0})
	fk := Config{Steps: 10, Images: 1, Particles: 4, Method: FK, Reward: color, Rule: schedule.DDIMRule, Eta: 1,
		Lambda: potentials.Lambda{Value: 1}, Resampling: potentials.Schedule{Every: 2, Start: 2, End: 6}}
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"zero steps", func(c *Config) { c.Steps = 0 }, "steps must be positive"},
		{"no particles", func(c *Config) { c.Particles = 0 }, "particles must be positive"},
		{"deterministic FK", func(c *Config) { c.Rule, c.Eta = schedule.EulerRule, 0 }, "FK steering needs a stochastic sampler"},
		{"dpm++2m FK", func(c *Config) { c.Rule = schedule.DPMpp2MRule }, "FK steering needs a stochastic sampler: dpm++2m"},
		{"ddim without eta", func(c *Config) { c.Eta = 0 }, "FK steering needs a stochastic sampler"},
		{"no reward", func(c *Config) { c.Reward = nil }, "needs a reward"},
		{"bad schedule", func(c *Config) { c.Resampling.Every = 0 }, "resampling interval 0 must be at least 1 step (--resample-every)"},
		{"negative interval", func(c *Config) { c.Resampling.Every = -1 }, "resampling interval -1 must be at least 1 step (--resample-every)"},
		{"end past the steps", func(c *Config) { c.Resampling.End = 999 }, "last resampling step 999 must lie between the first, 2, and the run's last step, 9 (--resample-end"},
		{"start past the steps", func(c *Config) { c.Resampling.Start, c.Resampling.End = 10, 10 }, "first resampling step 10 is outside the run's steps 0..9 (--resample-start"},
		{"end before start", func(c *Config) { c.Resampling.End = 1 }, "last resampling step 1 must lie between the first, 2,"},
		{"NaN ESS threshold", func(c *Config) { c.Resampling.ESSThreshold = math.NaN() }, "ESS threshold NaN must be a fraction of the particles in [0, 1] (--ess-threshold"},
		{"NaN lambda", func(c *Config) { c.Lambda.Value = math.NaN() }, "lambda NaN is not a finite number (--lambda)"},
		{"negative eta", func(c *Config) { c.Eta = -1 }, "eta -1 is not a noise level: it must be a finite number >= 0 (--eta"},
		{"NaN eta", func(c *Config) { c.Eta = math.NaN() }, "eta NaN is not a noise level"},
		{"infinite eta", func(c *Config) { c.Eta = math.Inf(1) }, "eta +Inf is not a noise level"},
		{"NaN guidance", func(c *Config) { c.Guidance = math.NaN() }, "guidance NaN is not a finite number (--guidance"},
		{"infinite guidance", func(c *Config) { c.Guidance = math.Inf(1) }, "guidance +Inf is not a finite number (--guidance"},
		{"seed wraps", func(c *Config) { c.Seed, c.Images = math.MaxUint64, 3 }, "seed 18446744073709551615 with 3 images wraps around (image i uses seed+i): the largest usable seed is 18446744073709551613 (--seed)"},
		{"prefix with FK", func(c *Config) { c.SharedPrefix = 3 }, "cannot be combined with FK"},
		{"sample without FK", func(c *Config) { c.Method, c.Select = BestOfN, SelectSample }, "needs --method fk"},
		{"init without strength", func(c *Config) { c.Init = []float32{0} }, "--strength"},
		{"strength above 1", func(c *Config) { c.Init, c.Strength = []float32{0}, 1.5 }, "--strength"},
		{"NaN strength", func(c *Config) { c.Init, c.Strength = []float32{0}, math.NaN() }, "--strength"},
		{"no step walked", func(c *Config) { c.Init, c.Strength = []float32{0}, 0.05 }, "raise --strength or --steps"},
		{"strength without init", func(c *Config) { c.Strength = 0.5 }, "--strength"},
		{"prefix past the walked steps", func(c *Config) {
			c.Method, c.Init, c.Strength, c.SharedPrefix = Base, []float32{0}, 0.5, 5
		}, "shared prefix 5"},
	} {
		cfg := fk
		c.change(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
		// Front ends tell a bad configuration from a failed run by type (the CLI exits with 2).
		var ce *ConfigError
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("%s: error %T is not a *ConfigError", c.name, err)
		}
	}
	// The largest seed that does not wrap, and a schedule that ends on the last step, are valid.
	edge := fk
	edge.Seed, edge.Images, edge.Resampling.End = math.MaxUint64-2, 3, 9
	if err := edge.Validate(); err != nil {
		t.Errorf("seed MaxUint64-2 with 3 images, resampling to the last step: %v", err)
	}
	if err := fk.Validate(); err != nil {
		t.Errorf("valid FK config rejected: %v", err)
	}
	lcm := fk
	lcm.Rule, lcm.Eta = schedule.LCMRule, 0
	if err := lcm.Validate(); err != nil {
		t.Errorf("FK with lcm rejected: %v", err)
	}
	img := fk
	img.Init, img.Strength = []float32{0}, 0.75
	if err := img.Validate(); err != nil {
		t.Errorf("valid image-to-image config rejected: %v", err)
	}
}

// StepsWalked is diffusers' init_timestep = min(int(steps*strength), steps), with its float
// rounding: int(10*0.7) = int(7.000000000000001) = 7, int(10*0.3) = 3, int(50*0.29) = 14.
func TestStepsWalked(t *testing.T) {
	for _, c := range []struct {
		steps    int
		strength float64
		want     int
	}{{10, 0.7, 7}, {10, 0.3, 3}, {50, 0.29, 14}, {50, 0.8, 40}, {10, 1, 10}, {10, 0.05, 0}, {4, 0.999, 3}} {
		cfg := Config{Steps: c.steps, Init: []float32{}, Strength: c.strength}
		if got := cfg.StepsWalked(); got != c.want {
			t.Errorf("steps %d strength %v: %d steps walked, want %d", c.steps, c.strength, got, c.want)
		}
	}
	if got := (Config{Steps: 10, Strength: 0.5}).StepsWalked(); got != 10 {
		t.Errorf("without Init: %d steps walked, want all 10", got)
	}
}

// The flow-sde rules read an unset eta (0) as Flow-GRPO's default noise level, so that they run
// on models that recommend no eta (the MNIST DiT); a set eta, and every other rule's, is kept.
func TestValidateFillsTheFlowSDENoiseLevel(t *testing.T) {
	for _, c := range []struct {
		rule      schedule.Rule
		eta, want float64
	}{
		{schedule.FlowSDERule, 0, 0.7}, {schedule.FlowSDECleanRule, 0, 0.7}, {schedule.FlowSDERule, 0.3, 0.3}, {schedule.FlowSDECleanRule, 1.2, 1.2},
		{schedule.DDIMRule, 0, 0}, {schedule.EulerARule, 0, 0}, {schedule.EulerRule, 0, 0},
	} {
		cfg := Config{Steps: 4, Images: 1, Particles: 1, Rule: c.rule, Eta: c.eta}
		if err := cfg.Validate(); err != nil || cfg.Eta != c.want {
			t.Errorf("%s eta %v: validated eta %v (%v), want %v", c.rule, c.eta, cfg.Eta, err, c.want)
		}
		if got, want := c.rule.Stochastic(c.eta), c.want > 0; got != want {
			t.Errorf("%s eta %v: Stochastic %v, want %v", c.rule, c.eta, got, want)
		}
	}
	if schedule.DefaultFlowSDENoise != 0.7 {
		t.Errorf("schedule.DefaultFlowSDENoise = %v, want Flow-GRPO's noise_level 0.7", schedule.DefaultFlowSDENoise)
	}
}

// TestValidateForChecksTheClass: a class override must be one of a class-conditional model's
// classes or its null class, and is refused for models conditioned on anything else, before the
// run reaches the model.
func TestValidateForChecksTheClass(t *testing.T) {
	mnist := pipelines.Info{Name: "mnist-dit-rf", Channels: 1, Height: 2, Width: 2, Conditioning: pipelines.ClassCond,
		Classes: []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, NullClass: 10}
	glyphs := pipelines.Info{Name: "glyphs", Channels: 3, Height: 2, Width: 2, Conditioning: pipelines.VectorCond}
	class := func(c int64) Config {
		return Config{Steps: 4, Images: 1, Particles: 1, CondOpts: pipelines.CondOptions{Class: &c}}
	}
	for _, c := range []struct {
		info  pipelines.Info
		class int64
		want  string
	}{
		{mnist, 99, "class 99 (--class) is not one of mnist-dit-rf's classes: 0..9, or 10 for an unconditional sample"},
		{mnist, 11, "class 11 (--class) is not one of mnist-dit-rf's classes"},
		{mnist, -2, "class -2 (--class) is not one of mnist-dit-rf's classes"},
		{glyphs, 99, "class 99 (--class) applies only to class-conditional models; glyphs is conditioned on text"},
		{glyphs, 0, "applies only to class-conditional models"},
	} {
		cfg := class(c.class)
		err := cfg.ValidateFor(c.info)
		var ce *ConfigError
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &ce) {
			t.Errorf("%s class %d: error %v, want a *ConfigError mentioning %q", c.info.Name, c.class, err, c.want)
		}
	}
	for _, ok := range []int64{0, 9, 10} {
		cfg := class(ok)
		if err := cfg.ValidateFor(mnist); err != nil {
			t.Errorf("class %d refused: %v", ok, err)
		}
	}
	img := Config{Steps: 4, Images: 1, Particles: 1, Init: make([]float32, 5), Strength: 1}
	if err := img.ValidateFor(mnist); err == nil || !strings.Contains(err.Error(), "initial state of 5 values") {
		t.Errorf("wrong-sized initial state: %v", err)
	}
}
