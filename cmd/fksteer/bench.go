package main

import (
	"encoding/json"
	"fmt"
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
	"github.com/fksteer/fksteer/sampler"
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
			ms, err := bench.ProviderModels(strings.Split(modelNames, ","), manifest, sdSize, tmp)
			if err != nil {
				return err
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
			if a.v.GetBool("json") {
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
	fl.StringVar(&modelNames, "models", "glyphs,mnist-dit-rf,sd15", "models: "+bench.ProviderModelNames+" (synthetic, at --sd-size)")
	fl.StringVar(&ks, "ks", "1,4,16", "particle counts")
	fl.IntVar(&steps, "steps", 10, "timed steps per run")
	fl.StringVar(&manifest, "mnist-manifest", filepath.Join("examples", "mnist-dit-rf.yaml"), "the MNIST DiT manifest")
	fl.IntVar(&sdSize, "sd-size", 512, "synthetic SD 1.5 image size in pixels (a multiple of 8)")
	// The key generate prints its result as JSON with, here the rows.
	addFlags(fl, pick(samplingSettings, "json"))
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

// benchSteerCommand runs bench.Steer. Its flags start from bench.DefaultSteer, the published
// experiment. The keys whose meaning and default are generate's (potential, lambda, resampler)
// come from the settings table, so the configuration applies to them as everywhere. The others
// stay plain flags: model, seed, steps, sampler, eta and the FK schedule have defaults of their
// own (the MNIST DiT, seed 1, 50 stochastic DDIM steps, a measured schedule) that a config file
// or FKSTEER_* variable written for generate must not change, or the benchmark would no longer
// reproduce the published table; the rest (digits, K, runs, the judges) are the experiment's
// alone.
func (a *app) benchSteerCommand() *cobra.Command {
	c := bench.DefaultSteer()
	var digits, ks, methods string
	var every, start, end int
	var eta float64
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
			opts, err := a.initRuntime()
			if err != nil {
				return err
			}
			if c.Digits, err = parseInts(digits); err != nil {
				return usageError{fmt.Errorf("--digits: %w", err)}
			}
			if c.Ks, err = parseInts(ks); err != nil {
				return usageError{fmt.Errorf("--ks: %w", err)}
			}
			c.Methods = nil
			for _, name := range strings.Split(methods, ",") {
				m, err := sampler.ParseMethod(strings.TrimSpace(name))
				if err != nil {
					return usageError{fmt.Errorf("--methods: %w", err)}
				}
				c.Methods = append(c.Methods, m)
			}
			lambda := a.v.GetFloat64("lambda")
			c.Spec.Eta, c.Spec.Lambda = &eta, &lambda
			c.Spec.Potential, c.Spec.Resampler = a.v.GetString("potential"), a.v.GetString("resampler")
			// A schedule flag left alone leaves the benchmark its default, clamped to the steps.
			changed := cmd.Flags().Changed
			if changed("resample-every") {
				c.Spec.ResampleEvery = every
			}
			if changed("resample-start") {
				c.Spec.ResampleStart = &start
			}
			if changed("resample-end") {
				c.Spec.ResampleEnd = &end
			}
			c.Progress = func(line string) { fmt.Fprintln(a.stderr, line) }
			env := a.newEnv(opts)
			defer env.Close()
			t, err := bench.Steer(cmd.Context(), env, c)
			if err != nil {
				return err
			}
			t.Print(a.stdout)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Spec.Model, "model", c.Spec.Model, "the MNIST DiT manifest")
	fl.StringVar(&c.Classifier, "classifier", c.Classifier, "the MNIST classifier (reward and judge)")
	fl.StringVar(&c.MNISTDir, "mnist-dir", c.MNISTDir, "folder with the MNIST test split (t10k-*) for the independent reader")
	fl.StringVar(&digits, "digits", joinInts(c.Digits), "target digits, pooled")
	fl.StringVar(&ks, "ks", joinInts(c.Ks), "particle counts")
	fl.StringVar(&methods, "methods", "base,bon,fk", "methods to run (base runs at K = 1)")
	fl.IntVar(&c.Runs, "runs", c.Runs, "runs per method, K and digit (the table pools the digits: 64 runs per cell by default)")
	fl.Uint64Var(&c.Spec.Seed, "seed", c.Spec.Seed, "seed")
	fl.IntVar(&c.Spec.Steps, "steps", c.Spec.Steps, "sampling steps")
	fl.StringVar(&c.Spec.Sampler, "sampler", c.Spec.Sampler, "stochastic step rule")
	fl.Float64Var(&eta, "eta", *c.Spec.Eta, "sampler noise")
	addFlags(fl, pick(samplingSettings, "potential", "lambda", "resampler"))
	sched := bench.DefaultSteerSchedule()
	fl.IntVar(&every, "resample-every", sched.Every, "FK evaluation interval")
	fl.IntVar(&start, "resample-start", sched.Start, "FK first evaluation step")
	fl.IntVar(&end, "resample-end", sched.End, "FK last intermediate evaluation step")
	fl.IntVar(&c.ReaderK, "reader-k", c.ReaderK, "neighbours of the k-NN reader")
	return cmd
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

// joinInts writes a list of integers as parseInts reads it.
func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
