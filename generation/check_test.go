package generation_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/sampler"
)

// TestCheckOpensNothing: Check refuses what Prepare would refuse of the spec alone, as Prepare's
// error types, without opening the model or the reward (neither file exists), and passes a spec
// that can run; the model's defaults fill what the spec leaves to the model.
func TestCheckOpensNothing(t *testing.T) {
	env := &generation.Env{Limits: generation.Limits{Steps: 100, Particles: 8, PromptChars: 20}}
	one, end := 1.0, 40
	good := generation.Spec{Model: "missing/model.yaml", Steps: 20, Sampler: "ddim", Eta: &one,
		Method: "fk", Particles: 4, Reward: "classifier:model=missing.onnx,target=3"}
	if err := env.Check(good, pipelines.Info{}); err != nil {
		t.Fatalf("a spec that can run: %v", err)
	}
	leftToModel := good
	leftToModel.Steps, leftToModel.Sampler, leftToModel.Eta = 0, "", nil
	if err := env.Check(leftToModel, pipelines.Info{Defaults: pipelines.Defaults{Steps: 20, Sampler: "ddim", Eta: 1}}); err != nil {
		t.Errorf("settings left to the model, with its defaults: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*generation.Spec)
		want string
	}{
		{"unknown sampler", func(s *generation.Spec) { s.Sampler = "heun" }, "heun"},
		{"deterministic FK", func(s *generation.Spec) { s.Sampler = "euler" }, "stochastic"},
		{"schedule past the steps", func(s *generation.Spec) { s.ResampleEnd = &end }, "last resampling step 40"},
		{"steps over the limit", func(s *generation.Spec) { s.Steps = 101 }, "--steps 101"},
		{"particles over the limit", func(s *generation.Spec) { s.Particles = 9 }, "--particles 9"},
		{"prompt over the limit", func(s *generation.Spec) { s.Prompt = strings.Repeat("a", 21) }, "--prompt"},
		{"fk without a reward", func(s *generation.Spec) { s.Reward = "" }, "needs a reward"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := good
			c.edit(&s)
			err := env.Check(s, pipelines.Info{})
			var se *generation.SpecError
			var ce *sampler.ConfigError
			if !errors.As(err, &se) && !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a SpecError or a ConfigError", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}
