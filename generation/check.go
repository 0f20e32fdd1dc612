package generation

import (
	"context"
	"errors"
	"fmt"

	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// Check checks s as Prepare does, as far as that can be done without opening anything: the
// limits and the text, every name (sampler, method, select, potential, ramp, resampler) and what
// the sampler checks of the settings alone (FK's need of a stochastic sampler, the FK schedule
// against the steps, a seed that wraps around). info stands for the model: its Defaults fill
// what s leaves to the model, so a zero Info checks a spec that sets Steps itself. The reward
// is not built, nor the model opened; Prepare checks them, and the rest again.
//
// It is for a front end that runs many specs (a benchmark's table, a queue of requests) and
// must refuse a mistake in any of them before it opens a model or spends time on the first.
// Errors are a *SpecError or a *sampler.ConfigError, as Prepare's are.
func (e *Env) Check(s Spec, info pipelines.Info) error {
	s = s.withDefaults()
	if err := e.checkSpec(s); err != nil {
		return err
	}
	cfg, err := configWith(s, info, func() (rewards.Reward, error) { return standIn{}, nil })
	if err != nil {
		return err
	}
	return cfg.ValidateFor(info)
}

// checkSpec makes the checks of a spec (with its defaults filled) that need nothing but the
// spec and e's limits.
func (e *Env) checkSpec(s Spec) error {
	lim := e.limits()
	for _, t := range []struct{ text, what string }{{s.Prompt, "--prompt"}, {s.NegativePrompt, "--negative-prompt"}} {
		if err := checkText(t.text, t.what, lim.PromptChars); err != nil {
			return err
		}
	}
	switch {
	case s.Steps < 0:
		return &SpecError{fmt.Errorf("steps must be positive (got %d)", s.Steps)}
	case s.Images < 0:
		return &SpecError{fmt.Errorf("num-images must be positive (got %d)", s.Images)}
	case s.InitImage != "" && !(s.Strength > 0 && s.Strength <= 1):
		return &SpecError{fmt.Errorf("strength %g must be in (0, 1]: the share of the steps that redraw the init image", s.Strength)}
	}
	if s.Steps > lim.Steps {
		return &SpecError{fmt.Errorf("--steps %d is above the limit of %d steps: samplers gain nothing from so many (discrete models have 1000 noise levels); lower --steps, or raise --max-steps", s.Steps, lim.Steps)}
	}
	if s.Particles > lim.Particles {
		return &SpecError{fmt.Errorf("--particles %d is above the limit of %d per image; lower --particles, or raise --max-particles", s.Particles, lim.Particles)}
	}
	return nil
}

// standIn stands for a spec's reward in Check, where the sampler's checks need one to exist
// (best-of-N and FK refuse to run without) but nothing is scored.
type standIn struct{}

func (standIn) Name() string { return "stand-in" }
func (standIn) Close() error { return nil }
func (standIn) Score(context.Context, pixels.Images, string, []float64) error {
	return errors.New("generation: a stand-in reward does not score")
}
