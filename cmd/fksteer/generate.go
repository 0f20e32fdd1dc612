package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/generation/sheet"
	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/sampler"
)

func (a *app) generateCommand() *cobra.Command {
	var spec string
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate images from a prompt, optionally steered by a reward",
		Example: `  fksteer generate --prompt 'a red "A" on black' --num-images 4
  fksteer generate --model examples/mnist-dit-rf.yaml --prompt 7 --steps 50 --guidance 2
  fksteer generate --model examples/mnist-dit-rf.yaml --method fk --particles 8 \
      --reward classifier:model=../shared/models/mnist-cnn-classifier/mnist-8.onnx,target=3,crop=28
  fksteer generate --prompt '"A"' --method fk --particles 6 --reward color:target=#cc2222 --contact-sheet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.generate(cmd, spec) },
	}
	// A flag, not a setting: a spec is a file of settings itself, so a config file or an
	// environment variable naming one would be a second layer of the same thing.
	cmd.Flags().StringVar(&spec, "spec", "", "run spec: a YAML or JSON file of the run's settings (the keys of fksteer config show), or a PNG fksteer wrote, whose image it regenerates from its parameters chunk; flags beside it override its values")
	addFlags(cmd.Flags(), samplingSettings)
	addFlags(cmd.Flags(), generateSettings)
	// The key is batch's too: both refuse to replace outputs of other settings without it.
	addFlags(cmd.Flags(), []setting{mustLookup("overwrite")})
	// The key is batch's; generate shows its steps the same way (a bar on a terminal only).
	addFlags(cmd.Flags(), []setting{mustLookup("progress")})
	return cmd
}

func (a *app) generate(cmd *cobra.Command, path string) error {
	ctx := cmd.Context()
	var fromPNG string
	if path != "" {
		if _, err := a.layerSpec(path, cmd.Flags()); err != nil {
			return err
		}
		if strings.EqualFold(filepath.Ext(path), ".png") && len(flagsChanged(cmd.Flags())) == 0 {
			fromPNG = path
		}
	}
	spec, err := specOf(a.v)
	if err != nil {
		return err
	}
	batchSize := a.v.GetInt("batch-size")
	if batchSize <= 0 {
		return usageError{fmt.Errorf("num-images and batch-size must be positive (got %d and %d)", spec.Images, batchSize)}
	}
	opts, err := a.initRuntime()
	if err != nil {
		return err
	}
	env := a.newEnv(opts)
	defer env.Close()
	out := a.v.GetString("out")
	if err := checkWritable(out); err != nil {
		return err
	}
	run, err := env.Prepare(ctx, spec)
	if err != nil {
		return err
	}
	defer run.Close()
	if fromPNG != "" {
		recorded, err := generation.PNGParameters(fromPNG)
		if err != nil {
			return err
		}
		if err := checkReproduces(run, recorded); err != nil {
			return err
		}
	}
	cfg, total := run.Config, spec.Images
	if err := checkMemory(generation.EstimateMemory(run.Info(), cfg, min(batchSize, total), spec.ContactSheet), 1, "--particles or --batch-size"); err != nil {
		return err
	}
	if err := run.CheckEarlierOutputs(out, a.v.GetBool("overwrite")); err != nil {
		return err
	}
	a.log.Info("generating", "model", run.Info().Name, "prompt", logText(cfg.Prompt), "images", total, "steps", cfg.Steps,
		"sampler", cfg.Rule, "method", cfg.Method, "particles", cfg.Particles)
	mode := a.v.GetString("progress")
	if mode != "auto" && mode != "bar" && mode != "log" && mode != "off" {
		return usageError{fmt.Errorf("progress %q is not auto, bar, log or off", mode)}
	}
	chunks := (total + batchSize - 1) / batchSize
	prog := newStepProgress(mode, a.stderr, chunks*run.Observations())
	defer prog.clear()

	// Images are sampled in chunks and written as each chunk finishes, so an interrupted run keeps
	// what it finished; a group's result does not depend on its chunk (see sampler.Run).
	var written []generation.Written
	var stats []sampler.Stats
	var cells []sheet.Cell
	for done := 0; done < total; done += batchSize {
		res, err := run.Sample(ctx, done, min(batchSize, total-done), prog.observer())
		if err != nil {
			return allocFailure(err, "--particles or --batch-size")
		}
		files, err := res.WriteImages(out)
		if err != nil {
			return err
		}
		if spec.ContactSheet {
			if err := res.WriteSheets(out); err != nil {
				return err
			}
			cells = append(cells, res.GridCells(len(cells))...)
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
	if spec.ContactSheet && len(cells) > 1 {
		data, err := run.GridPNG(cells)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(out, run.GridName()), data, 0o644); err != nil {
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
			Images []generation.Written `json:"images"`
			Stats  summary              `json:"stats"`
		}{written, sum})
	}
	a.printSummary(cfg, written, sum)
	return nil
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
	Images int `json:"images"`
	// NFE counts the denoiser rows evaluated (a guided row counts 2), RewardEvals the images
	// the reward scored, Decoded and Previewed the states decoded by the model's decoder and
	// by its preview decoder.
	NFE         int     `json:"nfe"`
	RewardEvals int     `json:"reward_evaluations"`
	Decoded     int     `json:"decoded"`
	Previewed   int     `json:"previewed,omitempty"`
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
		s.NFE += st.NFE
		s.RewardEvals += st.RewardEvals
		s.Decoded += st.Decoded
		s.Previewed += st.Previewed
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

func (a *app) printSummary(cfg sampler.Config, written []generation.Written, s summary) {
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
				scores, text := generation.PartsString(img.Parts)
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
	fmt.Fprintf(w, "compute: %d NFE (%d per image), %d reward evaluations, %d decoded images\n",
		s.NFE, s.NFE/max(1, cfg.Images), s.RewardEvals, s.Decoded+s.Previewed)
	fmt.Fprintf(w, "time: %.2fs total, model %.2fs (%d calls)%s, reward %.2fs (%d calls), engine %.2fs\n",
		s.WallSeconds, s.ModelSec, s.ModelCalls, aux, s.RewardSec, s.RewardCalls, s.EngineSec)
}
