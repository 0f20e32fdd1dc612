package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/bench"
	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pipelines/sd"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

func (a *app) benchCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Reproduce fksteer's measurements"}
	cmd.AddCommand(a.benchSteerCommand(), a.benchProvidersCommand())
	return cmd
}

// benchProvidersCommand times the denoiser on each execution provider (docs/gpu.md).
func (a *app) benchProvidersCommand() *cobra.Command {
	var providers, modelNames, ks, manifest, jsonFile string
	var steps, sdSize int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "providers",
		Short: "Denoiser time per step on each execution provider: glyphs, the MNIST DiT, synthetic SD 1.5",
		Long: `Times each model at each K on each execution provider, in one process, and prints a markdown
table: rows per denoiser call, denoiser ms per step and the speed-up over the CPU provider,
wall ms per step, host<->device copies per step (from ONNX Runtime's profile), the share of
wall time outside ONNX Runtime, and the graph nodes that fell back to the CPU. The synthetic
Stable Diffusion 1.5 export has SD 1.5's real latent size and guidance (2K rows per call) but
small layers (with 4 convolutions of ballast), so it measures the path, not a real UNet.
scripts/gpu-check.sh runs it on a machine with a GPU.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := models.Init(a.v.GetString("ort-lib")); err != nil {
				return err
			}
			var provs []models.Provider
			for _, name := range strings.Split(providers, ",") {
				p, err := models.ParseProvider(name)
				if err != nil || p == models.Auto {
					return usageError{fmt.Errorf("--providers: %q is not an execution provider (cpu, webgpu, cuda, ...)", name)}
				}
				provs = append(provs, p)
			}
			kList, err := parseInts(ks)
			if err != nil || slices.Contains(kList, 0) {
				return usageError{fmt.Errorf("--ks: want positive particle counts, got %q", ks)}
			}
			if steps < 1 {
				return usageError{fmt.Errorf("--steps must be at least 1")}
			}
			tmp, err := os.MkdirTemp("", "fksteer-bench-providers-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			var ms []bench.ProviderModel
			for _, name := range strings.Split(modelNames, ",") {
				m, err := providerBenchModel(strings.TrimSpace(name), manifest, sdSize, tmp)
				if err != nil {
					return err
				}
				ms = append(ms, m)
			}
			// The benchmark sets the provider of every session itself.
			opts := []models.Option{models.WithThreads(a.v.GetInt("threads"), 0)}
			if kv, err := providerOptions(a.v.Get("provider-option")); err == nil && len(kv) > 0 {
				opts = append(opts, models.WithProviderOptions(kv))
			}
			rows, err := bench.RunProviders(cmd.Context(), bench.ProvidersConfig{
				Providers: provs, Models: ms, Ks: kList, Steps: steps, Options: opts, TempDir: tmp,
				Progress: func(line string) { fmt.Fprintln(a.stderr, line) },
			})
			if err != nil {
				return err
			}
			if jsonFile != "" {
				data, err := json.MarshalIndent(rows, "", "  ")
				if err != nil {
					return err
				}
				if err := atomicfile.Write(jsonFile, append(data, '\n'), 0o644); err != nil {
					return err
				}
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rows); err != nil {
					return err
				}
				return failedRows(rows)
			}
			fmt.Fprintf(a.stdout, "ONNX Runtime %s (%s); %d steps per run after 2 warm-up steps; %d cores\n\n", models.LoadedVersion(), models.LibraryPath(), steps, goruntime.NumCPU())
			bench.WriteProvidersTable(a.stdout, rows)
			return failedRows(rows)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&providers, "providers", "cpu,webgpu", "execution providers to compare")
	fl.StringVar(&modelNames, "models", "glyphs,mnist-dit-rf,sd15", "models: glyphs, mnist-dit-rf, sd15 (synthetic, at --sd-size)")
	fl.StringVar(&ks, "ks", "1,4,16", "particle counts")
	fl.IntVar(&steps, "steps", 10, "timed steps per run")
	fl.StringVar(&manifest, "mnist-manifest", filepath.Join("examples", "mnist-dit-rf.yaml"), "the MNIST DiT manifest")
	fl.IntVar(&sdSize, "sd-size", 512, "synthetic SD 1.5 image size in pixels (a multiple of 8)")
	fl.BoolVar(&asJSON, "json", false, "print the rows as JSON")
	fl.StringVar(&jsonFile, "json-file", "", "also write the rows as JSON to this file")
	return cmd
}

// failedRows turns rows whose provider failed into the command's error, after the table shows
// them, so a script notices.
func failedRows(rows []bench.ProviderRow) error {
	var failed []string
	for _, r := range rows {
		if r.Err != "" {
			failed = append(failed, fmt.Sprintf("%s on %s at K=%d", r.Model, r.Provider, r.K))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("bench providers: %d of %d measurements failed (%s); the table gives each error", len(failed), len(rows), strings.Join(failed, ", "))
}

// providerBenchModel opens the named benchmark model's pipeline.
func providerBenchModel(name, manifest string, sdSize int, tmp string) (bench.ProviderModel, error) {
	switch name {
	case "glyphs":
		cache, err := models.CacheDir()
		if err != nil {
			return bench.ProviderModel{}, err
		}
		return bench.ProviderModel{Name: name, Base: sampler.Config{Prompt: `"A"`, Rule: schedule.DDIMRule, Eta: 1},
			// x [3,32,32], t and the log-prior over 968 images in; x0 [3,32,32] out.
			IO:   func(rows int) (int, int) { return rows * (3*32*32 + 1 + 968), rows * 3 * 32 * 32 },
			Open: func(opts ...models.Option) (pipelines.Pipeline, error) { return pipelines.OpenGlyphs(cache, opts...) }}, nil
	case "mnist-dit-rf":
		return bench.ProviderModel{Name: name, Base: sampler.Config{Prompt: "3", Guidance: 2, Rule: schedule.EulerRule},
			// zt [1,32,32], t and the class (an int64: two float32s' worth) in; v [1,32,32] out.
			IO: func(rows int) (int, int) { return rows * (32*32 + 3), rows * 32 * 32 },
			Open: func(opts ...models.Option) (pipelines.Pipeline, error) {
				return pipelines.OpenManifest(manifest, opts...)
			}}, nil
	case "sd15":
		if sdSize <= 0 || sdSize%8 != 0 {
			return bench.ProviderModel{}, usageError{fmt.Errorf("--sd-size %d is not a positive multiple of 8", sdSize)}
		}
		dir := filepath.Join(tmp, "sd15")
		if err := synth.WriteSD(dir, synth.SD15, synth.SDOptions{SampleSize: sdSize / 8, Convs: 4}); err != nil {
			return bench.ProviderModel{}, err
		}
		latent := (sdSize / 8) * (sdSize / 8) * 4
		return bench.ProviderModel{Name: fmt.Sprintf("sd15-synthetic-%d", sdSize), Base: sampler.Config{Prompt: "a red apple", Guidance: 7.5, Rule: schedule.DDIMRule, Eta: 1},
			// latents, the timestep and 77 text states of the synthetic encoder's width 32 in
			// (a real SD 1.5 sends 77x768); the noise prediction out.
			IO:   func(rows int) (int, int) { return rows*(latent+77*32) + 1, rows * latent },
			Open: func(opts ...models.Option) (pipelines.Pipeline, error) { return sd.Open(dir, sd.Options{}, opts...) }}, nil
	}
	return bench.ProviderModel{}, usageError{fmt.Errorf("--models: unknown model %q (glyphs, mnist-dit-rf, sd15)", name)}
}

// benchSteerFlags are the steering benchmark's own settings; they are not configuration keys.
type benchSteerFlags struct {
	model, classifier, mnistDir string
	digits, ks, methods         string
	runs, steps, readerK        int
	seed                        uint64
	rule                        string
	eta, lambda                 float64
	potential, resampler        string
	every, start, end           int
}

func (a *app) benchSteerCommand() *cobra.Command {
	var f benchSteerFlags
	shared := filepath.Join("..", "shared", "models", "mnist-cnn-classifier")
	cmd := &cobra.Command{
		Use:   "steer",
		Short: "What steering buys on the real MNIST DiT: base, best-of-K and FK success rates",
		Long: `Runs the unconditional MNIST DiT with the stochastic flow sampler and steers it toward each
target digit, with the log-probability of that digit under the real MNIST classifier as reward.
For every K it runs --runs independent runs of best-of-K and FK (and base once) and prints
the classifier's success rate with its 95% Wilson interval, how often an independent k-NN
reader over real MNIST digits agrees, mean reward, denoiser evaluations and wall time per
image, the distinct lineages FK's final particles descend from, and FK's ESS trace.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opts, err := a.initRuntime()
			if err != nil {
				return err
			}
			digits, err := parseInts(f.digits)
			if err != nil {
				return usageError{fmt.Errorf("--digits: %w", err)}
			}
			ks, err := parseInts(f.ks)
			if err != nil {
				return usageError{fmt.Errorf("--ks: %w", err)}
			}
			var methods []sampler.Method
			for _, name := range strings.Split(f.methods, ",") {
				m, err := sampler.ParseMethod(strings.TrimSpace(name))
				if err != nil {
					return usageError{fmt.Errorf("--methods: %w", err)}
				}
				methods = append(methods, m)
			}
			rule, err := schedule.ParseRule(f.rule)
			if err != nil {
				return usageError{err}
			}
			kind, err := potentials.ParseKind(f.potential)
			if err != nil {
				return usageError{err}
			}
			scheme, err := particles.ParseScheme(f.resampler)
			if err != nil {
				return usageError{err}
			}
			base := sampler.Config{
				Steps: f.steps, Rule: rule, Eta: f.eta, Potential: kind,
				Lambda:     potentials.Lambda{Value: f.lambda},
				Resampling: f.schedule(cmd.Flags().Changed),
				Resampler:  scheme,
			}
			if err := f.check(digits, ks, methods, base); err != nil {
				return err
			}
			p, err := pipelines.OpenManifest(f.model, opts...)
			if err != nil {
				return err
			}
			defer p.Close()
			judge, err := rewards.NewClassifier(f.classifier, rewards.ClassifierOptions{Target: 0, Crop: 28, Mean: 0.5, Std: 0.5}, opts...)
			if err != nil {
				return err
			}
			defer judge.Close()
			reader, err := bench.LoadReader(filepath.Join(f.mnistDir, "t10k-images-idx3-ubyte.gz"), filepath.Join(f.mnistDir, "t10k-labels-idx1-ubyte"), f.readerK)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "bench steer: %s, digits %v, K %v, %d runs each, seed %d\n", p.Info().Name, digits, ks, f.runs, f.seed)
			rows, err := bench.Steer(ctx, bench.SteerConfig{
				Pipeline: p,
				Reward: func(target int) (rewards.Reward, error) {
					return rewards.NewClassifier(f.classifier, rewards.ClassifierOptions{Target: target, Crop: 28, Mean: 0.5, Std: 0.5, Score: rewards.LogProb}, opts...)
				},
				Judge: judge, Reader: reader, Digits: digits, Ks: ks, Methods: methods, Runs: f.runs, Seed: f.seed,
				Base:     base,
				Progress: func(line string) { fmt.Fprintln(a.stderr, line) },
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "MNIST DiT, unconditional, %s eta %g, %d steps; reward log p(digit) under the MNIST CNN; digits %s pooled; FK: %s, lambda %g, %s resampling every %d steps from %d to %d; seed %d\n\n",
				rule, f.eta, f.steps, f.digits, kind, f.lambda, scheme, base.Resampling.Every, base.Resampling.Start, base.Resampling.End, f.seed)
			bench.PrintSteer(a.stdout, rows)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", filepath.Join("examples", "mnist-dit-rf.yaml"), "the MNIST DiT manifest")
	fl.StringVar(&f.classifier, "classifier", filepath.Join(shared, "mnist-8.onnx"), "the MNIST classifier (reward and judge)")
	fl.StringVar(&f.mnistDir, "mnist-dir", shared, "folder with the MNIST test split (t10k-*) for the independent reader")
	fl.StringVar(&f.digits, "digits", "3,8", "target digits, pooled")
	fl.StringVar(&f.ks, "ks", "1,2,4,8,16", "particle counts")
	fl.StringVar(&f.methods, "methods", "base,bon,fk", "methods to run (base runs at K = 1)")
	fl.IntVar(&f.runs, "runs", 32, "runs per method, K and digit (the table pools the digits: 64 runs per cell by default)")
	fl.Uint64Var(&f.seed, "seed", 1, "seed")
	fl.IntVar(&f.steps, "steps", 50, "sampling steps")
	fl.StringVar(&f.rule, "sampler", "ddim", "stochastic step rule")
	fl.Float64Var(&f.eta, "eta", 1, "sampler noise")
	fl.StringVar(&f.potential, "potential", "diff", "FK potential")
	fl.Float64Var(&f.lambda, "lambda", 10, "FK lambda")
	fl.StringVar(&f.resampler, "resampler", "systematic", "resampling scheme")
	// Measured at K = 4 (64 runs, seed 1): every 5 steps from 5 to 30 (the reference's text-to-image
	// schedule) reached 69 %, to 45 75 %, every 2 steps from 2 to 46 97 %. The digit is settled
	// within a few steps of noisy predictions, so frequent resampling matters more here.
	fl.IntVar(&f.every, "resample-every", 2, "FK evaluation interval")
	fl.IntVar(&f.start, "resample-start", 2, "FK first evaluation step")
	fl.IntVar(&f.end, "resample-end", 46, "FK last intermediate evaluation step")
	fl.IntVar(&f.readerK, "reader-k", 5, "neighbours of the k-NN reader")
	return cmd
}

// schedule is the FK schedule the benchmark runs. The default every 2 steps from 2 to 46 is
// stated for the default 50 steps: at fewer steps, a default end (or start) the user left alone
// is clamped to the last step, so that the table's header says what runs; a value the user set
// is kept, and check refuses it if it lies beyond the steps.
func (f *benchSteerFlags) schedule(changed func(string) bool) potentials.Schedule {
	s := potentials.Schedule{Every: f.every, Start: f.start, End: f.end}
	last := max(0, f.steps-1)
	if !changed("resample-end") {
		s.End = max(min(s.End, last), min(s.Start, last))
	}
	if !changed("resample-start") {
		s.Start = min(s.Start, s.End)
	}
	return s
}

// check validates every flag before the first row runs, so that a mistake is reported at once
// rather than after the rows before the one it breaks: the counts, the digits, and the sampler
// configuration of every method and K the table holds, with the seed of its last digit.
func (f *benchSteerFlags) check(digits, ks []int, methods []sampler.Method, base sampler.Config) error {
	switch {
	case f.runs < 1:
		return usageError{fmt.Errorf("--runs %d: want at least 1 run per method, K and digit", f.runs)}
	case f.readerK < 1:
		return usageError{fmt.Errorf("--reader-k %d: want at least 1 neighbour", f.readerK)}
	case f.steps < 1:
		return usageError{fmt.Errorf("--steps %d: want at least 1 step", f.steps)}
	}
	for _, d := range digits {
		if d > 9 {
			return usageError{fmt.Errorf("--digits: %d is not an MNIST digit (0..9)", d)}
		}
	}
	for _, k := range ks {
		if k < 1 {
			return usageError{fmt.Errorf("--ks: want particle counts of at least 1, got %d", k)}
		}
	}
	// Digit i runs from seed --seed + i*1,000,000 (bench.Steer), which must not wrap either.
	if span := uint64(len(digits)-1) * 1_000_000; f.seed > math.MaxUint64-span {
		return usageError{fmt.Errorf("--seed %d wraps around: digit i uses seed+i*1000000, so the largest usable seed for %d digits is %d", f.seed, len(digits), uint64(math.MaxUint64)-span)}
	}
	// Validation needs a reward for bon and fk; any reward will do, none is run.
	probe := base
	probe.Reward = rewards.NewColor([3]float64{})
	probe.Images = f.runs
	probe.Seed = f.seed + uint64(len(digits)-1)*1_000_000 // bench.Steer's seed of the last digit
	for _, m := range methods {
		for _, k := range ks {
			c := probe
			c.Method, c.Particles = m, k
			if m == sampler.Base {
				c.Particles = 1
			}
			if err := c.Validate(); err != nil {
				return usageError{fmt.Errorf("%s at K=%d: %w", m, k, err)}
			}
		}
	}
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q is not a list of non-negative integers", s)
		}
		out = append(out, v)
	}
	return out, nil
}
