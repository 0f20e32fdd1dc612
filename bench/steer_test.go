package bench_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/bench"
	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/sampler"
)

// TestSteerScheduleIsTheOneThatRuns: the default schedule (every 2 steps from 2 to 46, stated
// for 50 steps) is clamped to the steps when the spec leaves it alone, so the table's header
// says what runs; a value the spec sets is kept, for Check to refuse.
func TestSteerScheduleIsTheOneThatRuns(t *testing.T) {
	end46 := 46
	for _, c := range []struct {
		steps              int
		end                *int
		wantStart, wantEnd int
	}{
		{50, nil, 2, 46},
		{10, nil, 2, 9},
		{2, nil, 1, 1},
		{1, nil, 0, 0},
		{10, &end46, 2, 46},
	} {
		cfg := bench.DefaultSteer()
		cfg.Spec.Steps, cfg.Spec.ResampleEnd = c.steps, c.end
		s := cfg.Schedule()
		if s.Every != 2 || s.Start != c.wantStart || s.End != c.wantEnd {
			t.Errorf("%d steps: schedule %+v, want every 2 from %d to %d", c.steps, s, c.wantStart, c.wantEnd)
		}
	}
}

// TestSteerCheck: every mistake in a steering benchmark is refused before anything opens (the
// default model path does not exist from this folder), as an error of the kinds a front end
// reports as bad usage, naming the cell it breaks.
func TestSteerCheck(t *testing.T) {
	env := &generation.Env{}
	if err := bench.DefaultSteer().Check(env); err != nil {
		t.Fatalf("the default benchmark: %v", err)
	}
	end46 := 46
	for _, c := range []struct {
		name  string
		edit  func(*bench.SteerConfig)
		wants []string
	}{
		{"no runs", func(c *bench.SteerConfig) { c.Runs = 0 }, []string{"--runs 0"}},
		{"K 0", func(c *bench.SteerConfig) { c.Ks = []int{1, 0} }, []string{"--ks", "at least 1"}},
		{"digit 12", func(c *bench.SteerConfig) { c.Digits = []int{3, 12} }, []string{"12 is not an MNIST digit"}},
		{"seed wraps", func(c *bench.SteerConfig) { c.Spec.Seed = 1<<64 - 10 }, []string{"wraps around"}},
		{"deterministic FK", func(c *bench.SteerConfig) { c.Spec.Sampler = "euler" }, []string{"fk at K=1: ", "stochastic sampler"}},
		{"end past the steps", func(c *bench.SteerConfig) { c.Spec.Steps, c.Spec.ResampleEnd = 10, &end46 }, []string{"fk at K=1: ", "last resampling step 46"}},
		{"bon only, deterministic", func(c *bench.SteerConfig) {
			c.Spec.Sampler, c.Methods = "euler", []sampler.Method{sampler.BestOfN}
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := bench.DefaultSteer()
			c.edit(&cfg)
			err := cfg.Check(env)
			if c.wants == nil {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			var se *generation.SpecError
			var ce *sampler.ConfigError
			if !errors.As(err, &se) && !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is neither a SpecError nor a ConfigError", err, err)
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
