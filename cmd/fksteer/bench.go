package main

import (
	"bytes"
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

// benchSteerCommand runs the inference-time scaling study: bench.Steer on the MNIST DiT, or
// with --glyphs-tv bench.GlyphsTV on the built-in glyphs model. Its flags start from
// bench.DefaultSteer and bench.DefaultTV, the published studies. The keys whose meaning and
// default are generate's (potential, lambda, resampler) come from the settings table, so the
// configuration applies to them as everywhere. The others stay plain flags: model, seed,
// steps, sampler, eta and the FK schedule have defaults of their own (the MNIST DiT, seed 1,
// 50 stochastic DDIM steps, a measured schedule) that a config file or FKSTEER_* variable
// written for generate must not change, or the study would no longer reproduce the published
// table; the rest (methods, budgets, digits, runs, the judges, the outputs) are the study's
// alone.
func (a *app) benchSteerCommand() *cobra.Command {
	c, tv := bench.DefaultSteer(), bench.DefaultTV()
	overrides := bench.DefaultOverrides()
	var digits, budgets, methods, table, plot string
	var glyphsTV bool
	var every, start, end int
	var eta float64
	cmd := &cobra.Command{
		Use:   "steer",
		Short: "The inference-time scaling study: every method at 2 to 16 times the base NFE on the MNIST DiT",
		Long: `Runs every steering and search method (base, bon, fk, svdd, beam, dts, dts-star, noise,
random) on the unconditional MNIST DiT, steered toward each target digit with the
log-probability of that digit under the real MNIST classifier as reward, at each budget: a
multiple of one unsteered image's NFE (--budgets; base runs once, at 1x). Each cell is --runs
runs per digit. It prints a markdown table (also written to --table): the classifier's
success rate with its 95% Wilson interval, how often an independent k-NN reader over real
MNIST digits agrees, both per digit, mean reward, distinct lineages, the mean pairwise
distance between the outputs, the NFE spent and the wall time per image. Optimisers are
marked (opt); a cell where the classifier and the reader differ by more than 20 points is
flagged as reward hacking. --plot draws success against NFE, one colour per method
(classifier solid, reader dashed, 95% bands). noise and random search run on the
deterministic euler sampler, the others on --sampler. --set changes one method's settings
(e.g. --set dts:lambda=4).

With --glyphs-tv it runs the exactness study instead: on the built-in glyphs model, the
prompt red "A" selects four data images and the tilted target p(x0) exp(8 r(x0)) / Z over
them is known exactly; each method draws --groups outputs at each budget, mapped to their
nearest data image, and the table gives their total-variation distance to the target and
to the prior (optimisers marked: they concentrate on the maximum), and the budget from
which each sampler is within TV 0.05.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			changed := cmd.Flags().Changed
			if err := studyFlags(changed, glyphsTV); err != nil {
				return err
			}
			for _, f := range []struct{ flag, path string }{{"table", table}, {"plot", plot}} {
				if dir := filepath.Dir(f.path); f.path != "" {
					if st, err := os.Stat(dir); err != nil || !st.IsDir() {
						return usageError{fmt.Errorf("--%s %s: the folder %s does not exist", f.flag, f.path, dir)}
					}
				}
			}
			opts, err := a.initRuntime()
			if err != nil {
				return err
			}
			if c.Budgets, err = parseInts(budgets); err != nil {
				return usageError{fmt.Errorf("--budgets: %w", err)}
			}
			c.Methods = nil
			for _, name := range strings.Split(methods, ",") {
				m, err := sampler.ParseMethod(strings.TrimSpace(name))
				if err != nil {
					return usageError{fmt.Errorf("--methods: %w", err)}
				}
				c.Methods = append(c.Methods, m)
			}
			c.Overrides = overrides
			progress := func(line string) { fmt.Fprintln(a.stderr, line) }
			env := a.newEnv(opts)
			defer env.Close()
			var out bytes.Buffer
			var study *bench.SteerTable
			if glyphsTV {
				tv.Methods, tv.Budgets, tv.Overrides, tv.Seed, tv.Progress = c.Methods, c.Budgets, c.Overrides, c.Spec.Seed, progress
				t, err := bench.GlyphsTV(cmd.Context(), env, tv)
				if err != nil {
					return err
				}
				t.Print(&out)
			} else {
				if c.Digits, err = parseInts(digits); err != nil {
					return usageError{fmt.Errorf("--digits: %w", err)}
				}
				lambda := a.v.GetFloat64("lambda")
				c.Spec.Eta, c.Spec.Lambda = &eta, &lambda
				c.Spec.Potential, c.Spec.Resampler = a.v.GetString("potential"), a.v.GetString("resampler")
				// A schedule flag left alone leaves the study its default, clamped to the steps.
				if changed("resample-every") {
					c.Spec.ResampleEvery = every
				}
				if changed("resample-start") {
					c.Spec.ResampleStart = &start
				}
				if changed("resample-end") {
					c.Spec.ResampleEnd = &end
				}
				c.Progress = progress
				if study, err = bench.Steer(cmd.Context(), env, c); err != nil {
					return err
				}
				study.Print(&out)
			}
			a.stdout.Write(out.Bytes())
			if table != "" {
				if err := atomicfile.Write(table, out.Bytes(), 0o644); err != nil {
					return err
				}
			}
			if plot != "" {
				return atomicfile.WriteFunc(plot, 0o644, func(f *os.File) error { return study.WritePlot(f) })
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&methods, "methods", joinMethods(c.Methods), "methods to run (base runs once, at 1x)")
	fl.StringVar(&budgets, "budgets", joinInts(c.Budgets), "budgets, as multiples of one base image's NFE")
	fl.Var(&overrides, "set", "one method's settings over the study's, as METHOD:key=value,...: e.g. dts:lambda=4,iterations=8 (repeatable)")
	fl.Uint64Var(&c.Spec.Seed, "seed", c.Spec.Seed, "seed")
	fl.StringVar(&table, "table", "", "also write the markdown table to this file")
	fl.StringVar(&plot, "plot", "", "write the plot of success against NFE to this PNG file (not with --glyphs-tv)")
	fl.BoolVar(&glyphsTV, "glyphs-tv", false, "run the exactness study on the built-in glyphs model instead of the MNIST study")
	fl.IntVar(&tv.Groups, "groups", tv.Groups, "outputs per cell of --glyphs-tv")
	fl.StringVar(&c.Spec.Model, "model", c.Spec.Model, "the MNIST DiT manifest")
	fl.StringVar(&c.Classifier, "classifier", c.Classifier, "the MNIST classifier (reward and judge)")
	fl.StringVar(&c.MNISTDir, "mnist-dir", c.MNISTDir, "folder with the MNIST test split (t10k-*) for the independent reader")
	fl.StringVar(&digits, "digits", joinInts(c.Digits), "target digits, pooled")
	fl.IntVar(&c.Runs, "runs", c.Runs, "runs per cell and digit (the table pools the digits: 64 runs per cell by default)")
	fl.IntVar(&c.Spec.Steps, "steps", c.Spec.Steps, "sampling steps")
	fl.StringVar(&c.Spec.Sampler, "sampler", c.Spec.Sampler, "stochastic step rule (noise and random run on euler)")
	fl.Float64Var(&eta, "eta", *c.Spec.Eta, "sampler noise")
	addFlags(fl, pick(samplingSettings, "potential", "lambda", "resampler"))
	sched := bench.DefaultSteerSchedule()
	fl.IntVar(&every, "resample-every", sched.Every, "FK evaluation interval")
	fl.IntVar(&start, "resample-start", sched.Start, "FK first evaluation step")
	fl.IntVar(&end, "resample-end", sched.End, "FK last intermediate evaluation step")
	fl.IntVar(&c.ReaderK, "reader-k", c.ReaderK, "neighbours of the k-NN reader")
	return cmd
}

// mnistOnly are bench steer's flags that set the MNIST study, which the glyphs exactness study
// (whose problem is fixed) refuses.
var mnistOnly = []string{"model", "classifier", "mnist-dir", "digits", "runs", "steps", "sampler", "eta", "potential",
	"lambda", "resampler", "resample-every", "resample-start", "resample-end", "reader-k", "plot"}

// studyFlags refuses the flags of the study that does not run.
func studyFlags(changed func(string) bool, glyphsTV bool) error {
	if !glyphsTV {
		if changed("groups") {
			return usageError{fmt.Errorf("--groups applies to --glyphs-tv; the MNIST study's runs are --runs")}
		}
		return nil
	}
	for _, f := range mnistOnly {
		if changed(f) {
			return usageError{fmt.Errorf("--%s applies to the MNIST study, not to --glyphs-tv (whose problem is fixed)", f)}
		}
	}
	return nil
}

// joinMethods writes methods as --methods reads them.
func joinMethods(ms []sampler.Method) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m)
	}
	return strings.Join(s, ",")
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
