package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/sheet"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/fetch"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pipelines/sd"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

func (a *app) generateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate images from a prompt, optionally steered by a reward",
		Example: `  fksteer generate --prompt 'a red "A" on black' --num-images 4
  fksteer generate --model examples/mnist-dit-rf.yaml --prompt 7 --steps 50 --guidance 2
  fksteer generate --model examples/mnist-dit-rf.yaml --method fk --particles 8 \
      --reward classifier:model=../shared/models/mnist-cnn-classifier/mnist-8.onnx,target=3,crop=28
  fksteer generate --prompt '"A"' --method fk --particles 6 --reward color:target=#cc2222 --contact-sheet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.generate(cmd) },
	}
	addFlags(cmd.Flags(), samplingSettings)
	addFlags(cmd.Flags(), generateSettings)
	// The key is batch's too: both refuse to replace outputs of other settings without it.
	addFlags(cmd.Flags(), []setting{mustLookup("overwrite")})
	// The key is batch's; generate shows its steps the same way (a bar on a terminal only).
	addFlags(cmd.Flags(), []setting{mustLookup("progress")})
	return cmd
}

func (a *app) generate(cmd *cobra.Command) error {
	ctx := cmd.Context()
	opts, err := a.initRuntime()
	if err != nil {
		return err
	}
	defer a.rewards.close()
	out := a.v.GetString("out")
	if err := checkWritable(out); err != nil {
		return err
	}
	p, err := a.openPipeline(a.v.GetString("model"), opts)
	if err != nil {
		return err
	}
	defer p.Close()
	cfg, err := a.samplerConfig(p.Info(), opts, a.v)
	if err != nil {
		return err
	}
	cfg.Prompt = a.v.GetString("prompt")
	if err := checkPromptText(cfg.Prompt, "--prompt"); err != nil {
		return err
	}
	if err := checkPromptText(a.v.GetString("negative-prompt"), "--negative-prompt"); err != nil {
		return err
	}
	run := runInfo{info: p.Info(), rewardSpec: a.v.GetString("reward"), negative: a.v.GetString("negative-prompt")}
	if err := applyNegative(p.Info(), run.negative, &cfg); err != nil {
		return err
	}
	if run.start, err = readStart(a.v); err != nil {
		return err
	}
	if err := applyStart(ctx, p, run.start, &cfg); err != nil {
		return err
	}
	total, batch := a.v.GetInt("num-images"), a.v.GetInt("batch-size")
	if total <= 0 || batch <= 0 {
		return usageError{fmt.Errorf("num-images and batch-size must be positive (got %d and %d)", total, batch)}
	}
	// The whole run at once, so that what only the last chunk would meet (a seed that wraps
	// around before the last image) is refused before the first.
	whole := cfg
	whole.Images = total
	if err := whole.ValidateFor(p.Info()); err != nil {
		return err
	}
	sheets := a.v.GetBool("contact-sheet")
	if err := checkMemory(estimateRun(p.Info(), cfg, min(batch, total), sheets), 1, "--particles or --batch-size"); err != nil {
		return err
	}
	if err := checkEarlierOutputs(out, run, cfg, total, sheets, a.v.GetBool("overwrite")); err != nil {
		return err
	}
	a.log.Info("generating", "model", p.Info().Name, "prompt", logText(cfg.Prompt), "images", total, "steps", cfg.Steps,
		"sampler", cfg.Rule, "method", cfg.Method, "particles", cfg.Particles)
	mode := a.v.GetString("progress")
	if mode != "auto" && mode != "bar" && mode != "log" && mode != "off" {
		return usageError{fmt.Errorf("progress %q is not auto, bar, log or off", mode)}
	}
	chunks := (total + batch - 1) / batch
	prog := newStepProgress(mode, a.stderr, chunks*cfg.StepsWalked())
	defer prog.clear()

	// Images are sampled in chunks and written as each chunk finishes, so an interrupted run keeps
	// what it finished; a group's result does not depend on its chunk (see sampler.Run).
	var written []writtenImage
	var stats []sampler.Stats
	var cells []sheet.Cell
	first := cfg.Seed
	for done := 0; done < total; done += batch {
		chunk := cfg
		chunk.Images = min(batch, total-done)
		chunk.Seed = first + uint64(done)
		var rec *sheet.Recorder
		var record func(sampler.StepInfo)
		if sheets {
			rec = sheet.NewRecorder(chunk.Particles)
			record = rec.Observe
		}
		chunk.Observer = observers(record, prog.observer())
		res, err := sampler.Run(ctx, p, chunk)
		if err != nil {
			return allocFailure(err, "--particles or --batch-size")
		}
		files, err := writeImages(out, run, chunk, res)
		if err != nil {
			return err
		}
		if sheets {
			if err := writeSheets(out, rec, run, chunk, res); err != nil {
				return err
			}
			cells = append(cells, gridCells(res, len(cells))...)
		}
		written = append(written, files...)
		stats = append(stats, res.Stats)
		if !a.v.GetBool("json") {
			prog.hide()
			for _, f := range files {
				fmt.Fprintln(a.stdout, f.Path)
			}
		}
	}
	if sheets && len(cells) > 1 {
		name := fmt.Sprintf("grid-%d-%d.png", first, first+uint64(total)-1)
		if err := writeGrid(filepath.Join(out, name), run, cfg, cells); err != nil {
			return err
		}
	}
	prog.clear()
	sum := summarize(stats)
	sum.Images = len(written)
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

// writeSheets writes each group's contact sheet as <seed>.sheet.png.
func writeSheets(dir string, rec *sheet.Recorder, run runInfo, cfg sampler.Config, res *sampler.Result) error {
	for g := range cfg.Images {
		seed := cfg.Seed + uint64(g)
		data, err := sheetPNG(rec, g, run, cfg, res)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(dir, fmt.Sprintf("%d.sheet.png", seed)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// sheetPNG draws group g's contact sheet, with the group's settings in its parameters chunk.
func sheetPNG(rec *sheet.Recorder, g int, run runInfo, cfg sampler.Config, res *sampler.Result) ([]byte, error) {
	seed := cfg.Seed + uint64(g)
	title := fmt.Sprintf("%s | %s, K=%d, seed %d", cfg.Prompt, cfg.Method, cfg.Particles, seed)
	return encodeSheet(rec.Genealogy(g, res, title), parameters(run, cfg, sampler.Output{Group: g, Seed: seed, Reward: math.NaN()}))
}

// gridCells are a run's outputs as grid cells captioned with their position and reward (seeds
// are too long for a caption; each image's file records its own).
func gridCells(res *sampler.Result, first int) []sheet.Cell {
	var cells []sheet.Cell
	for i, o := range res.Outputs {
		caption := fmt.Sprintf("#%d", first+i)
		if !math.IsNaN(o.Reward) {
			caption += fmt.Sprintf(" r=%.3g", o.Reward)
		}
		cells = append(cells, sheet.Cell{Image: res.Images.Image(i), Caption: caption})
	}
	return cells
}

// writeGrid writes the final images of a prompt as one grid image.
func writeGrid(path string, run runInfo, cfg sampler.Config, cells []sheet.Cell) error {
	data, err := gridPNG(run, cfg, cells)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}

func gridPNG(run runInfo, cfg sampler.Config, cells []sheet.Cell) ([]byte, error) {
	cols := int(math.Ceil(math.Sqrt(float64(len(cells)))))
	title := fmt.Sprintf("%s | %s, K=%d", cfg.Prompt, cfg.Method, cfg.Particles)
	return encodeSheet(sheet.Grid(title, cells, cols), parameters(run, cfg, sampler.Output{Seed: cfg.Seed, Reward: math.NaN()}))
}

// checkNegative refuses a negative prompt the run could not honour. The pipelines have no
// negative conditioning yet: with guidance on, the unconditional branch would silently ignore
// it; with guidance off a negative prompt has no effect in any tool, so it is only recorded.
// samplerConfig turns the configuration (or a batch item's overlay on it) into a
// sampler.Config, filling the model's defaults for keys the user did not set. The prompt is the
// caller's to fill.
func (a *app) samplerConfig(info pipelines.Info, opts []models.Option, v settings) (sampler.Config, error) {
	cfg := sampler.Config{
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
	if err := checkCounts(cfg.Steps, cfg.Particles, "--particles"); err != nil {
		return cfg, err
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
	var err error
	cfg.Rule = info.Defaults.Sampler
	if v.IsSet("sampler") || cfg.Rule == "" {
		if cfg.Rule, err = schedule.ParseRule(cmp.Or(v.GetString("sampler"), string(schedule.EulerRule))); err != nil {
			return cfg, usageError{err}
		}
	}
	if cfg.Method, err = sampler.ParseMethod(v.GetString("method")); err != nil {
		return cfg, usageError{err}
	}
	if s := v.GetString("select"); s != "" {
		if cfg.Select, err = sampler.ParseSelection(s); err != nil {
			return cfg, usageError{err}
		}
	} else {
		// sampler.Run's own default, made explicit so the parameters chunk records it.
		cfg.Select = sampler.SelectBest
		if cfg.Method == sampler.Base {
			cfg.Select = sampler.SelectAll
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
	cfg.Resampling = resampling(cfg.Steps, v.GetInt("resample-every"), v.GetInt("resample-start"), v.GetInt("resample-end"))
	cfg.Resampling.ESSThreshold = v.GetFloat64("ess-threshold")
	if spec := v.GetString("reward"); spec != "" {
		// The image size lets a reward check its options against it (a classifier's crop)
		// now, not at the first scoring step.
		env := rewards.Env{ModelOptions: opts, ImageHeight: info.ImageHeight, ImageWidth: info.ImageWidth}
		if cfg.Reward, err = a.rewards.get(spec, env); err != nil {
			// A spec that cannot be built fails the same way on every rerun: bad usage.
			return cfg, rewardError(err)
		}
	}
	// Catch settings that cannot work (FK with a deterministic sampler, ...) before any sampling.
	probe := cfg
	probe.Images = max(1, probe.Images)
	if err := probe.ValidateFor(info); err != nil {
		return cfg, usageError{err}
	}
	// The noise level the run uses (flow-sde: 0.7 when unset), so outputs record it.
	cfg.Eta = probe.Eta
	return cfg, nil
}

// rewardCache builds each reward spec once per process and shares it between runs, so a batch
// of thousands of items opens a reward's model once.
type rewardCache struct {
	mu sync.Mutex
	m  map[string]rewards.Reward
}

func (c *rewardCache) get(spec string, env rewards.Env) (rewards.Reward, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[spec]; ok {
		return r, nil
	}
	r, err := rewards.Parse(spec, env)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[string]rewards.Reward{}
	}
	// Batch workers share one reward: rewards.Reward promises that concurrent calls are safe.
	c.m[spec] = r
	return r, nil
}

func (c *rewardCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.m {
		r.Close()
	}
	c.m = nil
}

// openPipeline opens the model named by the model key: the built-in glyphs model, a name from
// the config file's models map or a pulled catalog export, or a manifest file.
func (a *app) openPipeline(model string, opts []models.Option) (pipelines.Pipeline, error) {
	cache, err := models.CacheDir()
	if err != nil {
		return nil, err
	}
	if sd.IsExport(model) {
		return a.openSD(model, opts)
	}
	// A pulled catalog export in the Stable Diffusion layout (fksteer models pull sd-turbo).
	if e, err := fetch.Lookup(model); err == nil && e.Manifest == "" && e.Pulled(cache) && sd.IsExport(e.Dir(cache)) {
		return a.openSD(e.Dir(cache), opts)
	}
	if err := a.checkNotSD(model); err != nil {
		return nil, err
	}
	if model == "" || model == pipelines.GlyphsName {
		return pipelines.OpenGlyphs(cache, opts...)
	}
	if path, ok := configuredModels(a.v)[strings.ToLower(model)]; ok {
		return pipelines.OpenManifest(path, opts...)
	}
	if path, err := fetch.ResolveManifest(model, cache); err != nil || path != "" {
		if err != nil {
			return nil, err
		}
		return pipelines.OpenManifest(path, opts...)
	}
	switch {
	case strings.HasSuffix(model, ".yaml") || strings.HasSuffix(model, ".yml"):
		return pipelines.OpenManifest(model, opts...)
	case strings.HasSuffix(model, ".onnx"):
		return nil, usageError{fmt.Errorf("model %s is a bare ONNX file: describe it with a manifest (see examples/mnist-dit-rf.yaml and docs/manifest.md, or run fksteer models inspect %s for a starting one) and pass the manifest", model, model)}
	}
	if st, err := os.Stat(model); err == nil && st.IsDir() {
		return nil, fmt.Errorf("model %s is a folder without model_index.json: fksteer reads Stable Diffusion export folders (model_index.json, unet/, text_encoder/, vae_decoder/, ...), the built-in glyphs model and single-file models described by a manifest (.yaml)", model)
	}
	return nil, fmt.Errorf("model %q is neither the built-in glyphs model, a configured or pulled model (fksteer models list), nor a manifest .yaml file that exists", model)
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
	// AuxSec and AuxCalls are the pipeline's other models: text encoders and VAE.
	AuxSec    float64 `json:"text_encoder_vae_seconds,omitempty"`
	AuxCalls  int     `json:"text_encoder_vae_calls,omitempty"`
	EngineSec float64 `json:"engine_seconds"`
	ESSTrace  string  `json:"ess_trace,omitempty"`
}

func summarize(stats []sampler.Stats) summary {
	var s summary
	var wall, model, aux, reward, engine time.Duration
	for _, st := range stats {
		s.ModelCalls += st.ModelCalls
		s.RewardCalls += st.RewardCalls
		s.Resamplings += st.Resamplings
		wall += st.Wall
		model += st.ModelTime
		reward += st.RewardTime
		engine += st.EngineTime
		aux += st.AuxTime
		s.AuxCalls += st.AuxCalls
	}
	if len(stats) > 0 && len(stats[0].ESS) > 0 {
		s.ESSTrace = stats[0].ESSTrace()
	}
	s.WallSeconds, s.ModelSec, s.RewardSec, s.EngineSec = wall.Seconds(), model.Seconds(), reward.Seconds(), engine.Seconds()
	s.AuxSec = aux.Seconds()
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
		for _, img := range written {
			if img.Parts != nil {
				scores, text := partsString(img.Parts)
				fmt.Fprintf(w, "  %s: %s %s\n", filepath.Base(img.Path), scores, text)
			}
		}
	}
	if cfg.Method == sampler.FK {
		fmt.Fprintf(w, "resamplings: %d; ESS (first image) by step: %s\n", s.Resamplings, s.ESSTrace)
	}
	aux := ""
	if s.AuxCalls > 0 {
		aux = fmt.Sprintf(", text encoder and VAE %.2fs (%d calls)", s.AuxSec, s.AuxCalls)
	}
	fmt.Fprintf(w, "time: %.2fs total, model %.2fs (%d calls)%s, reward %.2fs (%d calls), engine %.2fs\n",
		s.WallSeconds, s.ModelSec, s.ModelCalls, aux, s.RewardSec, s.RewardCalls, s.EngineSec)
}

// resampling builds the FK schedule from the resample-every/start/end settings, where 0 (every)
// and -1 (start, end) mean "scaled to the step count" (potentials.ScaledSchedule).
func resampling(steps, every, start, end int) potentials.Schedule {
	auto := potentials.ScaledSchedule(steps)
	if every == 0 {
		every = auto.Every
	}
	// Automatic values stay within the steps (step steps-1 is the last), so that only a value
	// the user chose can be refused for lying beyond them.
	if start == -1 {
		start = min(every, max(0, steps-1))
	}
	if end == -1 {
		end = max(start, min(auto.End, steps-1))
	}
	return potentials.Schedule{Every: every, Start: start, End: end}
}
