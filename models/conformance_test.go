package models_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/glyphs"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/synth"
)

// The provider conformance suite: every model family fksteer's tests use runs on the WebGPU
// execution provider and on the CPU with the same inputs, and the outputs must agree within
// the tolerances below. On CI the WebGPU adapter is Mesa's lavapipe (a software Vulkan driver),
// so this checks the GPU code path and its numerics, not its speed.
//
// Tolerances are on max|webgpu - cpu| / max(1, max|cpu|) per output. Float32 models: 1e-3 (the
// measured worst is ~1e-5, from reassociated sums and fused kernels). Float16 models round
// every activation to 11 significant bits, on either provider, but at different places once
// kernels fuse differently: 1e-2.
const (
	float32Tolerance = 1e-3
	float16Tolerance = 1e-2
)

// conformanceCase is one ONNX model and how to feed it.
type conformanceCase struct {
	name string
	path func(t *testing.T) string
	// shapes gives concrete shapes for inputs (and float16 outputs) with dynamic dimensions;
	// other inputs take their declared shape with dynamic dimensions set to 2.
	shapes models.Shapes
	// ranges gives [lo, hi) for an input's values; floats default to [-1, 1), integers to
	// [0, 10).
	ranges map[string][2]float64
	tol    float64
	// heavyOnGPU: every Conv, MatMul and Gemm must run on WebGPU (false for models that are
	// float64 by design, which WebGPU cannot run).
	heavyOnGPU bool
}

func TestProviderConformance(t *testing.T) {
	modeltest.WebGPU(t)
	var report []string
	for _, c := range conformanceCases(t) {
		t.Run(c.name, func(t *testing.T) {
			line := checkConformance(t, c)
			report = append(report, line)
		})
	}
	// The fallback table of docs/gpu.md is this report.
	if path := os.Getenv("FKSTEER_CONFORMANCE_REPORT"); path != "" {
		body := "| model | max relative error | nodes on WebGPU | on the CPU |\n|---|---|---|---|\n" + strings.Join(report, "\n") + "\n"
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func conformanceCases(parent *testing.T) []conformanceCase {
	shared := func(rel string) func(t *testing.T) string {
		return func(t *testing.T) string { return testenv.SharedFile(t, rel) }
	}
	built := func(name string, build func() ([]byte, error)) func(t *testing.T) string {
		return func(t *testing.T) string {
			data, err := build()
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), name+".onnx")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	cases := []conformanceCase{
		{name: "glyphs", path: func(t *testing.T) string {
			p, err := glyphs.EnsureModel(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return p
		}, shapes: models.Shapes{glyphs.InputX: {4, 3, 32, 32}, glyphs.InputT: {4}, glyphs.InputPrior: {4, 968}},
			ranges: map[string][2]float64{glyphs.InputT: {0.05, 1}, glyphs.InputPrior: {-3, 0}}, tol: float32Tolerance},
		{name: "mnist-dit-rf", path: shared("models/mnist-dit-rf/model.onnx"),
			shapes: models.Shapes{"zt": {4, 1, 32, 32}, "t": {4}, "cond": {4}},
			ranges: map[string][2]float64{"t": {0, 1}, "cond": {0, 11}}, tol: float32Tolerance, heavyOnGPU: true},
		{name: "mnist-cnn-classifier", path: shared("models/mnist-cnn-classifier/mnist-8.onnx"), tol: float32Tolerance, heavyOnGPU: true},
		{name: "ppocr-det", path: shared("models/ppocr-en/en_PP-OCRv3_det_infer.onnx"),
			shapes: models.Shapes{"x": {1, 3, 64, 96}}, tol: float32Tolerance, heavyOnGPU: true},
		{name: "ppocr-rec", path: shared("models/ppocr-en/en_number_mobile_v2.0_rec_infer.onnx"),
			shapes: models.Shapes{"x": {2, 3, 32, 100}}, tol: float32Tolerance, heavyOnGPU: true},
		{name: "laion-aesthetic-head", path: shared("models/laion-aesthetic-vitb32-linear/laion_aesthetic.onnx"), tol: float32Tolerance, heavyOnGPU: true},
		{name: "dinov2", path: built("dinov2", func() ([]byte, error) {
			return synth.DINOv2(synth.ViT{Size: 56, Patch: 14, Dim: 16, Registers: 4, Seed: 11})
		}), shapes: models.Shapes{synth.PixelValues: {2, 3, 56, 56}}, tol: float32Tolerance, heavyOnGPU: true},
		{name: "clip-vision", path: built("clip-vision", func() ([]byte, error) {
			return synth.CLIPVision(synth.ViT{Size: 64, Patch: 32, Dim: 32, Seed: 2}, 512)
		}), shapes: models.Shapes{synth.PixelValues: {2, 3, 64, 64}}, tol: float32Tolerance, heavyOnGPU: true},
		{name: "clip-scorer", path: built("clip-scorer", func() ([]byte, error) {
			return synth.CLIPScorer(synth.ViT{Size: 32, Patch: 16, Dim: 16, Seed: 5}, synth.CLIPText{Length: 77, Vocab: 64}, 8)
		}), shapes: models.Shapes{synth.PixelValues: {3, 3, 32, 32}, synth.InputIDs: {1, 77}},
			ranges: map[string][2]float64{synth.InputIDs: {0, 64}}, tol: float32Tolerance, heavyOnGPU: true},
	}
	for _, v := range synth.SDVariants {
		tol := float32Tolerance
		if v == synth.SD15FP16 {
			tol = float16Tolerance
		}
		// The folder outlives the subtests that read it: it belongs to the parent test.
		dir := filepath.Join(parent.TempDir(), string(v))
		folder := func(t *testing.T) string {
			if _, err := os.Stat(dir); err != nil {
				if err := synth.WriteSD(dir, v, synth.SDOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			return dir
		}
		part := func(name string) func(t *testing.T) string {
			return func(t *testing.T) string { return filepath.Join(folder(t), name, "model.onnx") }
		}
		ids := map[string][2]float64{synth.InputIDs: {0, 568}}
		text := models.Shapes{synth.InputIDs: {2, 77}}
		if v == synth.SD15FP16 {
			// float16 outputs whose size no input gives
			text[synth.LastHiddenState] = []int64{2, 77, 32}
			text[synth.PoolerOutput] = []int64{2, 32}
		}
		var unet, decoder, encoder models.Shapes
		if v == synth.SD15FP16 {
			unet = models.Shapes{synth.OutSample: {2, 4, 8, 8}}
			decoder = models.Shapes{synth.Sample: {2, 3, 64, 64}}
			encoder = models.Shapes{"latent_parameters": {2, 8, 8, 8}}
		}
		cases = append(cases,
			conformanceCase{name: string(v) + "/text_encoder", path: part("text_encoder"), shapes: text, ranges: ids, tol: tol, heavyOnGPU: true},
			conformanceCase{name: string(v) + "/unet", path: part("unet"), shapes: unet, ranges: map[string][2]float64{synth.Timestep: {1, 999}}, tol: tol, heavyOnGPU: true},
			conformanceCase{name: string(v) + "/vae_decoder", path: part("vae_decoder"), shapes: decoder, tol: tol, heavyOnGPU: true},
		)
		if v == synth.SDXL {
			cases = append(cases, conformanceCase{name: string(v) + "/text_encoder_2", path: part("text_encoder_2"), shapes: models.Shapes{synth.InputIDs: {2, 77}}, ranges: ids, tol: tol, heavyOnGPU: true})
		}
		if v == synth.SD15 || v == synth.SD15Optimum || v == synth.SD15FP16 {
			cases = append(cases, conformanceCase{name: string(v) + "/vae_encoder", path: part("vae_encoder"), shapes: encoder, tol: tol, heavyOnGPU: true})
		}
	}
	return cases
}

// checkConformance runs c on both providers and returns its row of the report.
func checkConformance(t *testing.T, c conformanceCase) string {
	path := c.path(t)
	prefix := filepath.Join(t.TempDir(), "webgpu")
	cpu := runWith(t, path, c, models.WithProvider("cpu", 0))
	gpu := runWith(t, path, c, models.WithProvider("webgpu", 0), models.WithProfiling(prefix))
	worst := 0.0
	for name, want := range cpu {
		got := gpu[name]
		scale := 1.0
		for _, v := range want {
			scale = math.Max(scale, math.Abs(float64(v)))
		}
		diff := 0.0
		for i := range want {
			d := math.Abs(float64(got[i]) - float64(want[i]))
			if math.IsNaN(d) {
				d = math.Inf(1)
			}
			diff = math.Max(diff, d)
		}
		rel := diff / scale
		worst = math.Max(worst, rel)
		if rel > c.tol {
			t.Errorf("output %s: webgpu differs from cpu by %.3g (relative, tolerance %g)", name, rel, c.tol)
		}
	}
	p, err := models.ReadProfiles(prefix)
	if err != nil {
		t.Fatal(err)
	}
	onGPU, onCPU := p.On("WebGpu"), p.On("CPU")
	var heavy []string
	for _, n := range onCPU {
		if n.Op == "Conv" || n.Op == "MatMul" || n.Op == "Gemm" {
			heavy = append(heavy, n.Name)
		}
	}
	if c.heavyOnGPU && len(heavy) > 0 {
		t.Errorf("heavy nodes fell back to the CPU: %s", strings.Join(heavy, ", "))
	}
	if len(onGPU) == 0 {
		t.Error("no node ran on WebGPU")
	}
	cpuOps := models.OpCounts(onCPU)
	if cpuOps == "" {
		cpuOps = "none"
	}
	t.Logf("max relative error %.2g; %d of %d nodes on WebGPU; on the CPU: %s", worst, len(onGPU), len(p.Nodes), cpuOps)
	return fmt.Sprintf("| %s | %.1e | %d of %d | %s |", c.name, worst, len(onGPU), len(p.Nodes), cpuOps)
}

// runWith runs the model once on fixed pseudo-random inputs and returns every float output.
func runWith(t *testing.T, path string, c conformanceCase, opts ...models.Option) map[string][]float32 {
	t.Helper()
	s, err := models.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	shapes := models.Shapes{}
	for name, sh := range c.shapes {
		shapes[name] = sh
	}
	for _, in := range s.Inputs {
		if _, ok := shapes[in.Name]; ok {
			continue
		}
		// Dynamic dimensions: a batch of 2; Stable Diffusion's 4 latent channels of 8x8 (64x64
		// pixels for the VAE encoder); CLIP's 77 tokens.
		sh := slices.Clone(in.Dims)
		encoder := strings.Contains(path, "vae_encoder")
		for i, d := range sh {
			switch {
			case d >= 0:
			case i == 0:
				sh[i] = 2
			case len(sh) == 4 && i == 1 && encoder:
				sh[i] = 3
			case len(sh) == 4 && i == 1:
				sh[i] = 4
			case len(sh) == 4 && encoder:
				sh[i] = 64
			case len(sh) == 4:
				sh[i] = 8
			case len(sh) == 3 && i == 1:
				sh[i] = 77
			default:
				sh[i] = 2
			}
		}
		shapes[in.Name] = sh
	}
	call, err := s.NewCall(shapes)
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, in := range s.Inputs {
		lo, hi := -1.0, 1.0
		if !in.Type.IsFloat() {
			lo, hi = 0, 10
		}
		if r, ok := c.ranges[in.Name]; ok {
			lo, hi = r[0], r[1]
		}
		if in.Type.IsFloat() {
			x, err := call.Float32(in.Name)
			if err != nil {
				t.Fatal(err)
			}
			for i := range x {
				x[i] = float32(lo + (hi-lo)*rng.Float64())
			}
			continue
		}
		x, err := call.Int64(in.Name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range x {
			x[i] = int64(lo) + rng.Int64N(int64(hi-lo))
		}
	}
	if err := call.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, o := range s.Outputs {
		if !o.Type.IsFloat() {
			continue
		}
		v, _, err := call.Output(o.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[o.Name] = slices.Clone(v)
	}
	return out
}
