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

// TestStepLoopDoesNotAllocate compares the allocations of FK runs of 10 and 30 steps: all
// buffers are made once per run, so the 20 extra steps may only add what onnxruntime_go's Run
// allocates itself: a slice of input and of output pointers, and one GetInternals result per
// input and output (measured with -memprofile; none of it is fksteer's).
func TestStepLoopDoesNotAllocate(t *testing.T) {
	p := openGlyphs(t)
	r, err := rewards.Parse("color:target=#c02020", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	allocs := func(steps int) float64 {
		cfg := sampler.Config{
			Prompt: `"A"`, Steps: steps, Rule: schedule.DDIMRule, Eta: 1, Images: 2, Particles: 4, Seed: 1,
			Method: sampler.FK, Reward: r, Potential: potentials.Diff, Lambda: potentials.Lambda{Value: 5},
			Resampling: potentials.Schedule{Every: 2, Start: 2, End: 6}, Resampler: particles.Systematic,
		}
		return testing.AllocsPerRun(3, func() {
			if _, err := sampler.Run(context.Background(), p, cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
	short, long := allocs(10), allocs(30)
	perStep := (long - short) / 20
	info := p.Info()
	wrapper := float64(2 + 3 + 1) // the glyphs model has 3 inputs and 1 output
	t.Logf("%s: %.0f allocations for 10 steps, %.0f for 30: %.2f per extra step (onnxruntime_go: %.0f)", info.Name, short, long, perStep, wrapper)
	if perStep > wrapper {
		t.Errorf("%.2f allocations per step; onnxruntime_go's Run accounts for %.0f, the loop itself should add none", perStep, wrapper)
	}
}
