package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
)

func (a *app) generateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate images from a prompt, optionally steered by a reward",
		Example: `  fksteer generate --prompt 'a red "A" on black' --num-images 4
  fksteer generate --model examples/mnist-dit-rf.yaml --prompt 7 --steps 50 --guidance 2
  fksteer generate --model examples/mnist-dit-rf.yaml --method fk --particles 8 \
      --reward classifier:model=../shared/models/mnist-cnn-classifier/mnist-8.onnx,target=3,crop=28`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.generate(cmd) },
	}
	bindSettings(a.v, cmd.Flags(), generateSettings)
	return cmd
}

func (a *app) generate(cmd *cobra.Command) error {
	ctx := cmd.Context()
	opts, err := a.initRuntime()
	if err != nil {
		return err
	}
	out := a.v.GetString("out")
	if err := checkWritable(out); err != nil {
		return err
	}
	p, err := openPipeline(a.v.GetString("model"), opts)
	if err != nil {
		return err
	}
	defer p.Close()
	cfg, err := a.samplerConfig(p.Info(), opts)
	if err != nil {
		return err
	}
	if cfg.Reward != nil {
		defer cfg.Reward.Close()
	}
	total, batch := a.v.GetInt("num-images"), a.v.GetInt("batch-size")
	if total <= 0 || batch <= 0 {
		return usageError{fmt.Errorf("num-images and batch-size must be positive (got %d and %d)", total, batch)}
	}
	a.log.Info("generating", "model", p.Info().Name, "prompt", cfg.Prompt, "images", total, "steps", cfg.Steps,
		"sampler", cfg.Rule, "method", cfg.Method, "particles", cfg.Particles)

	// Images are sampled in chunks and written as each chunk finishes, so an interrupted run keeps
	// what it finished; a group's result does not depend on its chunk (see sampler.Run).
	var written []writtenImage
	var stats []sampler.Stats
	first := cfg.Seed
	for done := 0; done < total; done += batch {
		chunk := cfg
		chunk.Images = min(batch, total-done)
		chunk.Seed = first + uint64(done)
		res, err := sampler.Run(ctx, p, chunk)
		if err != nil {
			return err
		}
		files, err := writeImages(out, p.Info(), chunk, res, a.v.GetString("reward"))
		if err != nil {
			return err
		}
		written = append(written, files...)
		stats = append(stats, res.Stats)
		if !a.v.GetBool("json") {
			for _, f := range files {
				fmt.Fprintln(a.stdout, f.Path)
			}
		}
	}
	sum := summarize(stats)
	if a.v.GetBool("json") {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Images []writtenImage `json:"images"`
			Stats  summary        `json:"stats"`
		}{written, sum})
	}
	a.printSummary(cfg, written, sum)
	return nil
}

// samplerConfig turns the configuration into a sampler.Config, filling the model's defaults for
// keys the user did not set.
func (a *app) samplerConfig(info pipelines.Info, opts []models.Option) (sampler.Config, error) {
	v := a.v
	cfg := sampler.Config{
		Prompt:    v.GetString("prompt"),
		Steps:     info.Defaults.Steps,
		Guidance:  info.Defaults.Guidance,
		Eta:       info.Defaults.Eta,
		Seed:      v.GetUint64("seed"),
		Particles: v.GetInt("particles"),
	}
	if v.IsSet("steps") {
		cfg.Steps = v.GetInt("steps")
		if cfg.Steps <= 0 {
			return cfg, usageError{fmt.Errorf("steps must be positive (got %d)", cfg.Steps)}
		}
	}
	if v.IsSet("guidance") {
		cfg.Guidance = v.GetFloat64("guidance")
	}
	if v.IsSet("eta") {
		cfg.Eta = v.GetFloat64("eta")
	}
	if c := v.GetInt("class"); c >= 0 {
		class := int64(c)
		cfg.CondOpts.Class = &class
	}
	rule := info.Defaults.Sampler
	if v.IsSet("sampler") || rule == "" {
		rule = v.GetString("sampler")
	}
	if rule == "" {
		rule = string(sampler.Euler)
	}
	var err error
	if cfg.Rule, err = sampler.ParseRule(rule); err != nil {
		return cfg, usageError{err}
	}
	if cfg.Method, err = sampler.ParseMethod(v.GetString("method")); err != nil {
		return cfg, usageError{err}
	}
	if s := v.GetString("select"); s != "" {
		if cfg.Select, err = sampler.ParseSelection(s); err != nil {
			return cfg, usageError{err}
		}
	}
	if cfg.Resampler, err = particles.ParseScheme(v.GetString("resampler")); err != nil {
		return cfg, usageError{err}
	}
	if cfg.Potential, err = potentials.ParseKind(v.GetString("potential")); err != nil {
		return cfg, usageError{err}
	}
	ramp, err := potentials.ParseRamp(v.GetString("lambda-ramp"))
	if err != nil {
		return cfg, usageError{err}
	}
	cfg.Lambda = potentials.Lambda{Value: v.GetFloat64("lambda"), Start: v.GetFloat64("lambda-start"), Ramp: ramp}
	if err := cfg.Lambda.Validate(); err != nil {
		return cfg, usageError{err}
	}
	end := v.GetInt("resample-end")
	if end < 0 {
		end = cfg.Steps * 3 / 5
	}
	cfg.Resampling = potentials.Schedule{
		Every: v.GetInt("resample-every"), Start: v.GetInt("resample-start"), End: end,
		ESSThreshold: v.GetFloat64("ess-threshold"),
	}
	if spec := v.GetString("reward"); spec != "" {
		if cfg.Reward, err = rewards.Parse(spec, rewards.Env{ModelOptions: opts}); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// openPipeline opens the model named by the model key.
func openPipeline(model string, opts []models.Option) (pipelines.Pipeline, error) {
	switch {
	case model == "" || model == pipelines.GlyphsName:
		cache, err := models.CacheDir()
		if err != nil {
			return nil, err
		}
		return pipelines.OpenGlyphs(cache, opts...)
	case strings.HasSuffix(model, ".yaml") || strings.HasSuffix(model, ".yml"):
		return pipelines.OpenManifest(model, opts...)
	case strings.HasSuffix(model, ".onnx"):
		return nil, usageError{fmt.Errorf("model %s is a bare ONNX file: describe it with a manifest (see examples/mnist-dit-rf.yaml and docs/manifest.md) and pass the manifest", model)}
	}
	if st, err := os.Stat(model); err == nil && st.IsDir() {
		return nil, fmt.Errorf("model %s is a folder: this version of fksteer reads the built-in glyphs model and single-file models described by a manifest (.yaml); Stable Diffusion export folders are not supported yet", model)
	}
	return nil, fmt.Errorf("model %q is neither the built-in glyphs model nor a manifest .yaml file that exists", model)
}

// checkWritable creates the output folder and proves a file can be written there, so a bad --out
// fails before any sampling time is spent.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output folder %s cannot be created: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".fksteer-write-test-*")
	if err != nil {
		return fmt.Errorf("output folder %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

type summary struct {
	Images      int     `json:"images"`
	ModelCalls  int     `json:"model_calls"`
	RewardCalls int     `json:"reward_calls"`
	Resamplings int     `json:"resamplings"`
	WallSeconds float64 `json:"wall_seconds"`
	ModelSec    float64 `json:"model_seconds"`
	RewardSec   float64 `json:"reward_seconds"`
	EngineSec   float64 `json:"engine_seconds"`
	ESSTrace    string  `json:"ess_trace,omitempty"`
}

func summarize(stats []sampler.Stats) summary {
	var s summary
	var wall, model, reward, engine time.Duration
	for _, st := range stats {
		s.ModelCalls += st.ModelCalls
		s.RewardCalls += st.RewardCalls
		s.Resamplings += st.Resamplings
		wall += st.Wall
		model += st.ModelTime
		reward += st.RewardTime
		engine += st.EngineTime
	}
	if len(stats) > 0 && len(stats[0].ESS) > 0 {
		s.ESSTrace = stats[0].ESSTrace()
	}
	s.WallSeconds, s.ModelSec, s.RewardSec, s.EngineSec = wall.Seconds(), model.Seconds(), reward.Seconds(), engine.Seconds()
	return s
}

func (a *app) printSummary(cfg sampler.Config, written []writtenImage, s summary) {
	w := a.stderr
	fmt.Fprintf(w, "wrote %d image(s) to %s\n", len(written), filepath.Dir(written[0].Path))
	if cfg.Reward != nil {
		var rs []string
		for _, img := range written {
			rs = append(rs, fmt.Sprintf("%.4g", img.Reward))
		}
		fmt.Fprintf(w, "reward (%s) of the chosen samples: %s\n", cfg.Reward.Name(), strings.Join(rs, " "))
	}
	if cfg.Method == sampler.FK {
		fmt.Fprintf(w, "resamplings: %d; ESS (first image) by step: %s\n", s.Resamplings, s.ESSTrace)
	}
	fmt.Fprintf(w, "time: %.2fs total, model %.2fs (%d calls), reward %.2fs (%d calls), engine %.2fs\n",
		s.WallSeconds, s.ModelSec, s.ModelCalls, s.RewardSec, s.RewardCalls, s.EngineSec)
}
