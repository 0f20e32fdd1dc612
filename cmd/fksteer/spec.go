package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models"
)

// newEnv is the generation environment of this process's configuration: the runtime options
// initRuntime chose, the config file's models and the limits.
func (a *app) newEnv(opts []models.Option) *generation.Env {
	return &generation.Env{
		ModelOptions: opts,
		Models:       configuredModels(a.v),
		Limits:       generation.Limits{Steps: limitSteps, Particles: limitParticles, PromptChars: limitPromptChars},
		Log:          a.log,
	}
}

// specOf reads the run settings (the configuration, or a batch item's overlay on it) into a
// generation spec. Settings the user set explicitly to a value the spec reads as "the default"
// (0 steps, particles or images) are refused here, where it is known that they were set.
func specOf(v settings) (generation.Spec, error) {
	s := generation.Spec{
		Model:           v.GetString("model"),
		Prompt:          v.GetString("prompt"),
		NegativePrompt:  v.GetString("negative-prompt"),
		Seed:            v.GetUint64("seed"),
		Images:          v.GetInt("num-images"),
		Sampler:         v.GetString("sampler"),
		Method:          v.GetString("method"),
		Particles:       v.GetInt("particles"),
		Select:          v.GetString("select"),
		Reward:          v.GetString("reward"),
		Potential:       v.GetString("potential"),
		LambdaStart:     v.GetFloat64("lambda-start"),
		LambdaRamp:      v.GetString("lambda-ramp"),
		ResampleEvery:   v.GetInt("resample-every"),
		ESSThreshold:    v.GetFloat64("ess-threshold"),
		Resampler:       v.GetString("resampler"),
		Scheduler:       v.GetString("scheduler"),
		Width:           v.GetInt("width"),
		Height:          v.GetInt("height"),
		GuidanceRescale: v.GetFloat64("guidance-rescale"),
		PreviewDecoder:  v.GetString("preview-decoder"),
		ContactSheet:    v.GetBool("contact-sheet"),
		InitImage:       v.GetString("init-image"),
		Budget:          v.GetInt("budget"),
		Candidates:      v.GetInt("candidates"),
		Alpha:           v.GetFloat64("alpha"),
		BeamEvery:       v.GetInt("beam-every"),
		Neighbours:      v.GetInt("neighbours"),
		Rounds:          v.GetInt("rounds"),
		NoiseScale:      v.GetFloat64("noise-scale"),
		Iterations:      v.GetInt("iterations"),
		Widening:        v.GetFloat64("widening"),
		Exploration:     v.GetFloat64("exploration"),
	}
	if v.IsSet("steps") {
		if s.Steps = v.GetInt("steps"); s.Steps <= 0 {
			return s, usageError{fmt.Errorf("steps must be positive (got %d)", s.Steps)}
		}
	}
	if s.Particles <= 0 {
		return s, usageError{fmt.Errorf("number of particles must be positive (got %d) (--particles)", s.Particles)}
	}
	if s.Images <= 0 {
		return s, usageError{fmt.Errorf("num-images must be positive (got %d)", s.Images)}
	}
	lambda := v.GetFloat64("lambda")
	s.Lambda = &lambda
	for key, dst := range map[string]**float64{"guidance": &s.Guidance, "eta": &s.Eta} {
		if v.IsSet(key) {
			x := v.GetFloat64(key)
			*dst = &x
		}
	}
	if c := v.GetInt("class"); c >= 0 {
		class := int64(c)
		s.Class = &class
	}
	for key, dst := range map[string]**int{"resample-start": &s.ResampleStart, "resample-end": &s.ResampleEnd} {
		if n := v.GetInt(key); n != -1 {
			*dst = &n
		}
	}
	if s.InitImage != "" {
		if s.Strength = v.GetFloat64("strength"); !(s.Strength > 0 && s.Strength <= 1) {
			return s, usageError{fmt.Errorf("strength %g must be in (0, 1]: the share of the steps that redraw the init image", s.Strength)}
		}
	}
	return s, nil
}

// layerSpec puts the settings of a spec file (YAML, JSON, or a PNG fksteer wrote) under the
// command line's: every key the spec sets takes its value unless its flag was given. It returns
// the spec as read.
func (a *app) layerSpec(path string, fs *pflag.FlagSet) (generation.Spec, error) {
	s, err := generation.ReadSpec(path)
	if err != nil {
		return s, err
	}
	for key, raw := range s.Map() {
		if key == "references" {
			continue // not a setting: the spec itself carries them
		}
		if f := fs.Lookup(key); f != nil && f.Changed {
			continue
		}
		set, ok := lookup(key)
		if !ok {
			return s, fmt.Errorf("spec key %s is no setting of this command", key)
		}
		val, err := convert(raw, set.def)
		if err == nil {
			err = checkRange(key, val)
		}
		if err != nil {
			return s, usageError{fmt.Errorf("spec %s: %s: %w", path, key, err)}
		}
		a.v.Set(key, val)
	}
	return s, nil
}

// flagsChanged lists the run settings given on the command line, for messages.
func flagsChanged(fs *pflag.FlagSet) []string {
	var names []string
	for _, k := range generation.Keys() {
		if f := fs.Lookup(k); f != nil && f.Changed && k != "model" {
			names = append(names, "--"+k)
		}
	}
	return names
}

// checkReproduces refuses to regenerate a PNG's image with settings other than the ones it
// records, unless flags changed them on purpose: the model found by the recorded name must be
// the one with the recorded hash, the init image the recorded one, and so on.
func checkReproduces(run *generation.Run, recorded string) error {
	if diff := run.Differs(recorded, run.Spec.Seed); diff != "" {
		return usageError{fmt.Errorf("the image's settings cannot be reproduced here (%s): pass the model the image was made with (--model), or put its init image beside it", diff)}
	}
	return nil
}
