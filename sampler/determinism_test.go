package sampler_test

import (
	"context"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// TestResultsDoNotDependOnBatching runs the same seeds as one batch of four images and as four
// runs of one image: every image must be bit-identical, and repeating a run must be too.
func TestResultsDoNotDependOnBatching(t *testing.T) {
	for name, open := range map[string]func(testing.TB) *pipelines.Denoiser{"glyphs": openGlyphs, "mnist": openMNIST} {
		t.Run(name, func(t *testing.T) {
			p := open(t)
			cfg := sampler.Config{Prompt: "3", Steps: 12, Guidance: 2, Rule: schedule.DDIMRule, Eta: 1, Seed: 40, Images: 4, Particles: 1}
			if name == "glyphs" {
				cfg.Prompt, cfg.Guidance = `a "7" in yellow`, 1
			}
			batched, err := sampler.Run(context.Background(), p, cfg)
			if err != nil {
				t.Fatal(err)
			}
			again, err := sampler.Run(context.Background(), p, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(batched.Images.Pix, again.Images.Pix) {
				t.Fatal("the same run twice gave different images")
			}
			for i := range cfg.Images {
				one := cfg
				one.Images, one.Seed = 1, cfg.Seed+uint64(i)
				alone, err := sampler.Run(context.Background(), p, one)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(alone.Images.At(0), batched.Images.At(i)) {
					t.Errorf("image %d differs when sampled alone", i)
				}
			}
		})
	}
}
