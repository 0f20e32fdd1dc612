package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/onnxgraph"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/pipelines"
)

// ProviderModel is one model of the provider benchmark: the spec of its runs, which names the
// model, and what its denoiser's calls move.
type ProviderModel struct {
	Name string
	// Spec is the spec of every run; Particles, Steps, Images and Seed are set by the benchmark,
	// one image per run. Steps, Sampler, Eta and Guidance are best set, so that a model's
	// recommendations cannot change what is timed.
	Spec generation.Spec
	// IO gives the float32 values a denoiser call of rows rows sends to the model and reads
	// back: what crosses between host and device at every step.
	IO func(rows int) (in, out int)
}

// ProviderModelNames are the models ProviderModels knows.
const ProviderModelNames = "glyphs, mnist-dit-rf, sd15"

// ProviderModels returns the named models of the provider benchmark: glyphs (built in),
// mnist-dit-rf (the MNIST DiT of the manifest file mnistManifest) and sd15, a synthetic Stable
// Diffusion 1.5 export of sdSize pixels, written into dir, which must outlive the benchmark.
// It has SD 1.5's real latent size and guidance (2K rows per call) but small layers (with 4
// convolutions of ballast), so it measures the path, not a real UNet. An unknown name or a bad
// size is a *generation.SpecError.
func ProviderModels(names []string, mnistManifest string, sdSize int, dir string) ([]ProviderModel, error) {
	var out []ProviderModel
	for _, name := range names {
		m, err := providerModel(strings.TrimSpace(name), mnistManifest, sdSize, dir)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func providerModel(name, mnistManifest string, sdSize int, dir string) (ProviderModel, error) {
	ptr := func(v float64) *float64 { return &v }
	switch name {
	case "glyphs":
		return ProviderModel{Name: name, Spec: generation.Spec{Model: pipelines.GlyphsName, Prompt: `"A"`, Sampler: "ddim", Eta: ptr(1), Guidance: ptr(0)},
			// x [3,32,32], t and the log-prior over 968 images in; x0 [3,32,32] out.
			IO: func(rows int) (int, int) { return rows * (3*32*32 + 1 + 968), rows * 3 * 32 * 32 }}, nil
	case "mnist-dit-rf":
		return ProviderModel{Name: name, Spec: generation.Spec{Model: mnistManifest, Prompt: "3", Sampler: "euler", Eta: ptr(0), Guidance: ptr(2)},
			// zt [1,32,32], t and the class (an int64: two float32s' worth) in; v [1,32,32] out.
			IO: func(rows int) (int, int) { return rows * (32*32 + 3), rows * 32 * 32 }}, nil
	case "sd15":
		if sdSize <= 0 || sdSize%8 != 0 {
			return ProviderModel{}, &generation.SpecError{Err: fmt.Errorf("--sd-size %d is not a positive multiple of 8", sdSize)}
		}
		dir := filepath.Join(dir, "sd15")
		if err := synth.WriteSD(dir, synth.SD15, synth.SDOptions{SampleSize: sdSize / 8, Convs: 4}); err != nil {
			return ProviderModel{}, err
		}
		latent := (sdSize / 8) * (sdSize / 8) * 4
		return ProviderModel{Name: fmt.Sprintf("sd15-synthetic-%d", sdSize),
			Spec: generation.Spec{Model: dir, Prompt: "a red apple", Sampler: "ddim", Eta: ptr(1), Guidance: ptr(7.5)},
			// latents, the timestep and 77 text states of the synthetic encoder's width 32 in
			// (a real SD 1.5 sends 77x768); the noise prediction out.
			IO: func(rows int) (int, int) { return rows*(latent+77*32) + 1, rows * latent }}, nil
	}
	return ProviderModel{}, &generation.SpecError{Err: fmt.Errorf("--models: unknown model %q (%s)", name, ProviderModelNames)}
}

// ProvidersConfig is the provider benchmark: every model at every K on every provider, timed
// in one process so the ratios between providers share one machine state.
type ProvidersConfig struct {
	Providers []models.Provider
	Models    []ProviderModel
	Ks        []int
	// Steps per timed run; a run of 2 steps before it warms up (WebGPU compiles its shaders
	// on first use).
	Steps int
	// Options are the session options besides the provider (threads, provider options).
	Options []models.Option
	// TempDir receives the ONNX Runtime profiles the copy times are read from.
	TempDir  string
	Progress func(string)
}

// ProviderRow is one model at one K on one provider.
type ProviderRow struct {
	Provider models.Provider `json:"provider"`
	Model    string          `json:"model"`
	K        int             `json:"k"`
	// Rows is the batch of each denoiser call: K, or 2K with guidance.
	Rows int `json:"rows_per_call"`
	// StepMS is the denoiser's time per step (inside ONNX Runtime), WallMS the wall time per
	// step of the whole run (text encoding and decoding amortised).
	StepMS float64 `json:"step_ms"`
	WallMS float64 `json:"wall_ms_per_step"`
	// FeedMS is the time to move one step's inputs to the device and its outputs back, measured
	// by running a graph that does nothing else with tensors of the same sizes on the same
	// provider (ONNX Runtime copies a run's feeds and fetches outside the graph, where its
	// profile does not see them). GraphCopyMS is the copies inside the graphs, where a node
	// that fell back to the CPU meets one on the device (profiled medians per step). CopyMB is
	// what the feeds and fetches move per step.
	FeedMS      float64 `json:"feed_copy_ms_per_step"`
	GraphCopyMS float64 `json:"graph_copy_ms_per_step"`
	CopyMB      float64 `json:"copy_mb_per_step"`
	// EnginePct is the share of wall time outside ONNX Runtime's Run calls.
	EnginePct float64 `json:"engine_pct"`
	// CPUNodes counts the graph nodes of the pipeline's sessions that ran on the CPU provider
	// although another was asked for (shape arithmetic, unsupported operators).
	CPUNodes int    `json:"cpu_nodes"`
	Err      string `json:"error,omitempty"`
}

// RunProviders runs the benchmark. A provider that fails on a model gets a row with Err set
// rather than stopping the others.
func RunProviders(ctx context.Context, c ProvidersConfig) ([]ProviderRow, error) {
	if c.Steps < 1 || len(c.Ks) == 0 || len(c.Providers) == 0 || len(c.Models) == 0 {
		return nil, fmt.Errorf("bench providers: need providers, models, Ks and at least 1 step")
	}
	var rows []ProviderRow
	for _, m := range c.Models {
		for _, k := range c.Ks {
			for _, p := range c.Providers {
				if err := ctx.Err(); err != nil {
					return rows, err
				}
				row := ProviderRow{Provider: p, Model: m.Name, K: k}
				if err := measureProvider(ctx, c, m, k, &row); err != nil {
					if ctx.Err() != nil {
						return rows, ctx.Err()
					}
					row.Err = err.Error()
				}
				if c.Progress != nil {
					c.Progress(fmt.Sprintf("%s %s K=%d: %.1f ms/step %s", m.Name, p, k, row.StepMS, row.Err))
				}
				rows = append(rows, row)
			}
		}
	}
	return rows, nil
}

func measureProvider(ctx context.Context, c ProvidersConfig, m ProviderModel, k int, row *ProviderRow) error {
	prefix := filepath.Join(c.TempDir, fmt.Sprintf("%s-%s-k%d", strings.ReplaceAll(m.Name, "/", "_"), row.Provider, k))
	opts := append(slices.Clone(c.Options), models.WithProvider(string(row.Provider), 0))
	env := &generation.Env{ModelOptions: append(opts, models.WithProfiling(prefix))}
	warm, res, err := timedRuns(ctx, env, m.Spec, k, c.Steps)
	if cerr := env.Close(); err == nil { // closing writes the profiles
		err = cerr
	}
	if err != nil {
		return err
	}
	st := res.Stats
	row.Rows = k
	if res.Config.Guidance > 1 {
		row.Rows = 2 * k
	}
	row.StepMS = ms(st.ModelTime.Seconds()) / float64(max(st.ModelCalls, 1))
	row.WallMS = ms(st.Wall.Seconds()) / float64(max(st.Steps, 1))
	row.EnginePct = 100 * st.EngineTime.Seconds() / st.Wall.Seconds()
	prof, err := models.ReadProfiles(prefix)
	if err != nil {
		return err
	}
	defer removeProfiles(prefix)
	steps := float64(warm.Stats.Steps + st.Steps)
	for _, n := range prof.Nodes {
		// Median times, not sums: the first run of a WebGPU session compiles its shaders and
		// waits for them in its first copy back.
		if n.IsCopy() {
			row.GraphCopyMS += ms(n.Median.Seconds()) * float64(n.Runs) / steps
		}
	}
	if m.IO != nil && row.Provider != models.CPU {
		in, out := m.IO(row.Rows)
		row.CopyMB = float64(4*(in+out)) / 1e6
		d, err := copyProbe(ctx, in, out, opts)
		if err != nil {
			return fmt.Errorf("copy probe: %w", err)
		}
		row.FeedMS = ms(d.Seconds())
	}
	if row.Provider != models.CPU {
		row.CPUNodes = len(prof.On("CPU"))
	}
	return nil
}

// timedRuns samples one image of K particles with spec, for 2 steps that warm up (WebGPU
// compiles its shaders on first use) and then for steps that are timed.
func timedRuns(ctx context.Context, env *generation.Env, spec generation.Spec, k, steps int) (warm, timed *generation.Result, err error) {
	spec.Images, spec.Particles, spec.Seed = 1, k, 1
	for _, n := range []int{2, steps} {
		spec.Steps = n
		run, err := env.Prepare(ctx, spec)
		if err != nil {
			return nil, nil, err
		}
		res, err := run.Sample(ctx, 0, 1, nil)
		if err != nil {
			return nil, nil, err
		}
		warm, timed = timed, res
	}
	return warm, timed, nil
}

func ms(seconds float64) float64 { return 1000 * seconds }

// copyProbe times a graph that takes in values and returns out values while computing almost
// nothing (out copies of its first input value): the cost of a run's host<->device traffic.
// It returns the median of 9 runs after one that compiles.
func copyProbe(ctx context.Context, in, out int, opts []models.Option) (time.Duration, error) {
	g := onnxgraph.New("copy-probe", 17)
	x := g.Input("x", onnxgraph.Float32, onnxgraph.Fixed(int64(in)))
	first := g.Op("Slice", []string{x, g.Int64s(0), g.Int64s(1)})
	g.Node("Expand", []string{first, g.Int64s(int64(out))}, []string{g.Output("y", onnxgraph.Float32, onnxgraph.Fixed(int64(out)))})
	data, err := g.Marshal()
	if err != nil {
		return 0, err
	}
	s, err := models.OpenBytes("copy probe", data, opts...)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	c, err := s.NewCall(models.Shapes{"x": {int64(in)}})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	times := make([]time.Duration, 0, 10)
	for range 10 {
		start := time.Now()
		if err := c.Run(ctx); err != nil {
			return 0, err
		}
		times = append(times, time.Since(start))
	}
	times = times[1:]
	slices.Sort(times)
	return times[len(times)/2], nil
}

func removeProfiles(prefix string) {
	files, _ := filepath.Glob(prefix + "-*_*.json")
	for _, f := range files {
		os.Remove(f)
	}
}

// WriteProvidersTable writes the rows as a markdown table, with each row's speed-up over the
// CPU provider at the same model and K when the CPU was measured.
func WriteProvidersTable(w io.Writer, rows []ProviderRow) {
	cpu := map[string]float64{}
	for _, r := range rows {
		if r.Provider == models.CPU && r.Err == "" {
			cpu[fmt.Sprintf("%s/%d", r.Model, r.K)] = r.StepMS
		}
	}
	fmt.Fprintln(w, "| model | K | provider | rows/call | denoiser ms/step | vs cpu | wall ms/step | feed+fetch copies ms/step | MB copied/step | in-graph copies ms/step | outside ORT | nodes on CPU |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		if r.Err != "" {
			fmt.Fprintf(w, "| %s | %d | %s | error: %s |||||||||\n", r.Model, r.K, r.Provider, strings.ReplaceAll(firstLineOf(r.Err), "|", "/"))
			continue
		}
		speed := "—"
		if base, ok := cpu[fmt.Sprintf("%s/%d", r.Model, r.K)]; ok && r.StepMS > 0 && r.Provider != models.CPU {
			speed = fmt.Sprintf("%.2fx", base/r.StepMS)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %d | %.2f | %s | %.2f | %.3f | %.3f | %.3f | %.1f %% | %d |\n",
			r.Model, r.K, r.Provider, r.Rows, r.StepMS, speed, r.WallMS, r.FeedMS, r.CopyMB, r.GraphCopyMS, r.EnginePct, r.CPUNodes)
	}
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
