package sampler

import (
	"strings"
	"testing"

	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
)

func TestParseNames(t *testing.T) {
	if r, err := ParseRule("euler-a"); err != nil || r != EulerARule {
		t.Errorf("ParseRule(euler-a) = %v, %v", r, err)
	}
	if _, err := ParseRule("heun"); err == nil || !strings.Contains(err.Error(), "valid: euler, ddim, ddpm, euler-a, flow-sde") {
		t.Errorf("ParseRule(heun) error = %v", err)
	}
	if m, err := ParseMethod("bon"); err != nil || m != BestOfN {
		t.Errorf("ParseMethod(bon) = %v, %v", m, err)
	}
	if _, err := ParseSelection("first"); err == nil || !strings.Contains(err.Error(), `unknown selection "first"`) {
		t.Errorf("ParseSelection(first) error = %v", err)
	}
}

func TestValidateNamesTheProblem(t *testing.T) {
	color := rewards.NewColor([3]float64{1, 0, 0})
	fk := Config{Steps: 10, Images: 1, Particles: 4, Method: FK, Reward: color, Rule: DDIMRule, Eta: 1,
		Lambda: potentials.Lambda{Value: 1}, Resampling: potentials.Schedule{Every: 2, Start: 2, End: 6}}
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"zero steps", func(c *Config) { c.Steps = 0 }, "steps must be positive"},
		{"no particles", func(c *Config) { c.Particles = 0 }, "particles must be positive"},
		{"deterministic FK", func(c *Config) { c.Rule, c.Eta = Euler, 0 }, "FK steering needs a stochastic sampler"},
		{"ddim without eta", func(c *Config) { c.Eta = 0 }, "FK steering needs a stochastic sampler"},
		{"no reward", func(c *Config) { c.Reward = nil }, "needs a reward"},
		{"bad schedule", func(c *Config) { c.Resampling.Every = 0 }, "every = 0"},
		{"prefix with FK", func(c *Config) { c.SharedPrefix = 3 }, "cannot be combined with FK"},
		{"sample without FK", func(c *Config) { c.Method, c.Select = BestOfN, SelectSample }, "needs --method fk"},
	} {
		cfg := fk
		c.change(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	if err := fk.Validate(); err != nil {
		t.Errorf("valid FK config rejected: %v", err)
	}
}
