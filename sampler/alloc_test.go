package sampler_test

import (
	"context"
	"testing"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// TestStepLoopDoesNotAllocate compares the allocations of runs of 10 and 30 steps, for FK and
// for the search methods whose work is per step (svdd, beam, noise search's solves): all
// buffers are made once per run, so the 20 extra steps may only add what onnxruntime_go's Run
// allocates itself: a slice of input and of output pointers, and one GetInternals result per
// input and output (measured with -memprofile; none of it is fksteer's). Noise search makes 4
// rounds of calls a step. (dts grows a tree: its nodes are allocated as it grows, a block per
// level a round.)
func TestStepLoopDoesNotAllocate(t *testing.T) {
	p := openGlyphs(t)
	r, err := rewards.Parse("color:target=#c02020", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	wrapper := float64(2 + 3 + 1) // the glyphs model has 3 inputs and 1 output
	for _, c := range []struct {
		m     sampler.Method
		calls float64 // model calls a step
	}{{sampler.FK, 1}, {sampler.SVDD, 1}, {sampler.Beam, 1}, {sampler.Noise, 4}} {
		allocs := func(steps int) float64 {
			cfg := sampler.Config{
				Prompt: `"A"`, Steps: steps, Rule: schedule.DDIMRule, Eta: 1, Images: 2, Particles: 4, Seed: 1,
				Method: c.m, Reward: r, Potential: potentials.Diff, Lambda: potentials.Lambda{Value: 5},
				Resampling: potentials.Schedule{Every: 2, Start: 2, End: 6}, Resampler: particles.Systematic,
			}
			if c.m == sampler.Noise {
				cfg.Rule, cfg.Eta = schedule.EulerRule, 0
			}
			return testing.AllocsPerRun(3, func() {
				if _, err := sampler.Run(context.Background(), p, cfg); err != nil {
					t.Fatal(err)
				}
			})
		}
		short, long := allocs(10), allocs(30)
		perStep := (long - short) / 20
		t.Logf("%s: %.0f allocations for 10 steps, %.0f for 30: %.2f per extra step (onnxruntime_go: %.0f a call)", c.m, short, long, perStep, wrapper)
		if perStep > c.calls*wrapper {
			t.Errorf("%s: %.2f allocations per step; onnxruntime_go's Run accounts for %.0f, the loop itself should add none", c.m, perStep, c.calls*wrapper)
		}
	}
}
