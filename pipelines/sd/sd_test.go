package sd

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/schedule"
)

var (
	exportsOnce sync.Once
	exportsDir  string
	exportsErr  error
)

// export returns the folder of a synthetic export of variant v, written once per test binary.
func export(t *testing.T, v synth.SDVariant) string {
	t.Helper()
	modeltest.Runtime(t)
	exportsOnce.Do(func() {
		exportsDir, exportsErr = os.MkdirTemp("", "fksteer-sd-test-")
		for _, v := range synth.SDVariants {
			if exportsErr == nil {
				exportsErr = synth.WriteSD(filepath.Join(exportsDir, string(v)), v, synth.SDOptions{})
			}
		}
	})
	if exportsErr != nil {
		t.Fatal(exportsErr)
	}
	return filepath.Join(exportsDir, string(v))
}

func TestMain(m *testing.M) {
	code := m.Run()
	if exportsDir != "" {
		os.RemoveAll(exportsDir)
	}
	os.Exit(code)
}

func open(t *testing.T, v synth.SDVariant, o Options) *Pipeline {
	t.Helper()
	p, err := Open(export(t, v), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestVariantsOpen checks what every synthetic export variant is read as.
func TestVariantsOpen(t *testing.T) {
	cases := []struct {
		v         synth.SDVariant
		pred      pipelines.Prediction
		sched     schedule.SchedulerKind
		steps     int
		guidance  float64
		sampler   schedule.Rule
		family    Family
		timeFloat bool
	}{
		{synth.SD15, pipelines.PredictEpsilon, schedule.PNDMScheduler, 50, 7.5, "ddim", SD, false},
		{synth.SD15Optimum, pipelines.PredictEpsilon, schedule.PNDMScheduler, 50, 7.5, "ddim", SD, true},
		{synth.SD15FP16, pipelines.PredictEpsilon, schedule.PNDMScheduler, 50, 7.5, "ddim", SD, true},
		{synth.SD2V, pipelines.PredictV, schedule.DDIMScheduler, 50, 7.5, "ddim", SD, true},
		{synth.SDTurbo, pipelines.PredictEpsilon, schedule.EulerScheduler, 1, 0, "euler", SD, true},
		{synth.SDXL, pipelines.PredictEpsilon, schedule.EulerScheduler, 50, 5, "euler", SDXL, true},
		{synth.LCM, pipelines.PredictEpsilon, schedule.LCMScheduler, 4, 8.5, "lcm", LCM, false},
	}
	for _, c := range cases {
		t.Run(string(c.v), func(t *testing.T) {
			p := open(t, c.v, Options{})
			info := p.Info()
			if info.Channels != 4 || info.Height != 8 || info.Width != 8 || info.ImageChannels != 3 || info.ImageHeight != 64 || info.ImageWidth != 64 {
				t.Errorf("sizes %+v, want latents 4x8x8 and images 3x64x64", info)
			}
			if info.Prediction != c.pred || p.sched.Kind != c.sched || p.family != c.family {
				t.Errorf("prediction %s, scheduler %s, family %s; want %s, %s, %s", info.Prediction, p.sched.Kind, p.family, c.pred, c.sched, c.family)
			}
			d := info.Defaults
			if d.Steps != c.steps || d.Guidance != c.guidance || d.Sampler != c.sampler {
				t.Errorf("defaults %+v, want steps %d guidance %g sampler %s", d, c.steps, c.guidance, c.sampler)
			}
			if p.unet.time.Type.IsFloat() != c.timeFloat {
				t.Errorf("timestep input %s: float %t, want %t", p.unet.time, p.unet.time.Type.IsFloat(), c.timeFloat)
			}
			if len(info.Hash) != 64 || !info.Negative {
				t.Errorf("hash %q, negative %t", info.Hash, info.Negative)
			}
		})
	}
}

// predict runs one Predict of n copies of a fixed latent at SD1.5's timestep 501.
func predict(t *testing.T, p *Pipeline, c pipelines.Cond, guidance float64, n int) (x, x0, eps []float32) {
	t.Helper()
	size := p.Info().Len()
	x = make([]float32, n*size)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)*0.37)) * 0.9
	}
	x0, eps = make([]float32, len(x)), make([]float32, len(x))
	lvl := schedule.Level{Time: 501, Alpha: math.Sqrt(0.28), Sigma: math.Sqrt(0.72)}
	if err := p.Predict(context.Background(), nil, x, n, lvl, c, guidance, x0, eps); err != nil {
		t.Fatal(err)
	}
	return x, x0, eps
}

// TestGuidanceIsOneDoubledBatch checks classifier-free guidance against its definition: the
// guided eps equals u + g(c - u) for the separately computed negative (u) and prompt (c)
// predictions, and it took one UNet call of 2n rows.
func TestGuidanceIsOneDoubledBatch(t *testing.T) {
	for _, v := range []synth.SDVariant{synth.SD15, synth.SD15FP16, synth.SD2V, synth.SDXL} {
		t.Run(string(v), func(t *testing.T) {
			p := open(t, v, Options{})
			ctx := context.Background()
			cond, err := p.Condition(ctx, nil, "a red apple", pipelines.CondOptions{Negative: "blurry"})
			if err != nil {
				t.Fatal(err)
			}
			neg, err := p.Condition(ctx, nil, "blurry", pipelines.CondOptions{})
			if err != nil {
				t.Fatal(err)
			}
			const n, g = 3, 7.5
			before := p.Stats().ModelCalls
			_, _, guided := predict(t, p, cond, g, n)
			if calls := p.Stats().ModelCalls - before; calls != 1 {
				t.Errorf("guided predict made %d UNet calls, want 1", calls)
			}
			if p.unet.guided.Calls.Idle()[2*n] != 1 {
				t.Errorf("no prepared call of %d rows was used", 2*n)
			}
			_, _, c := predict(t, p, cond, 1, n)
			_, _, u := predict(t, p, neg, 1, n)
			tol := 1e-5
			if v == synth.SD15FP16 {
				tol = 2e-2 // float16 outputs, amplified by g
			}
			var worst float64
			for i := range guided {
				want := float64(u[i]) + g*(float64(c[i])-float64(u[i]))
				worst = max(worst, math.Abs(float64(guided[i])-want))
			}
			if worst > tol {
				t.Errorf("guided eps differs from u + g(c-u) by up to %g (tolerance %g)", worst, tol)
			}
			if c[0] == u[0] && c[1] == u[1] {
				t.Errorf("prompt and negative prompt give the same prediction: conditioning is not reaching the UNet")
			}
		})
	}
}

// TestLCMTakesGuidanceAsEmbedding: no doubled batch, and the guidance changes the prediction.
func TestLCMTakesGuidanceAsEmbedding(t *testing.T) {
	p := open(t, synth.LCM, Options{})
	cond, err := p.Condition(context.Background(), nil, "a red apple", pipelines.CondOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, a, _ := predict(t, p, cond, 8.5, 2)
	_, b, _ := predict(t, p, cond, 2, 2)
	if kept := p.unet.guided.Calls.Idle(); kept[4] != 0 || kept[2] != 1 {
		t.Errorf("LCM prepared calls by rows %v, want one of 2 rows and none of 4", kept)
	}
	if a[0] == b[0] {
		t.Errorf("guidance 8.5 and 2 give the same x0 %g: timestep_cond is not filled", a[0])
	}
}

func TestGuidanceEmbedding(t *testing.T) {
	dst := make([]float32, 256)
	guidanceEmbedding(dst, 7.5)
	// Frequencies 10000^(-i/127); w*1000 = 7500.
	for _, i := range []int{0, 1, 64, 127} {
		arg := 7500 * math.Pow(10000, -float64(i)/127)
		if d := math.Abs(float64(dst[i]) - math.Sin(arg)); d > 2e-3 {
			t.Errorf("sin part %d = %g, want %g", i, dst[i], math.Sin(arg))
		}
		if d := math.Abs(float64(dst[128+i]) - math.Cos(arg)); d > 2e-3 {
			t.Errorf("cos part %d = %g, want %g", i, dst[128+i], math.Cos(arg))
		}
	}
	// An odd width: two frequencies, 1 and 10000^-1, and a zero pad. w*1000 = 1000.
	odd := make([]float32, 5)
	guidanceEmbedding(odd, 1)
	want := []float64{math.Sin(1000), math.Sin(0.1), math.Cos(1000), math.Cos(0.1), 0}
	for i, w := range want {
		if math.Abs(float64(odd[i])-w) > 1e-4 {
			t.Errorf("odd embedding %v, want %v", odd, want)
			break
		}
	}
}

// TestRescaleGuidance checks diffusers' rescale_noise_cfg on a hand-computed row.
func TestRescaleGuidance(t *testing.T) {
	// g = [1, 3] (std sqrt(2)), c = [0, 1] (std sqrt(0.5)): scaled g = g/2; phi 0.7 mixes
	// 0.7*g/2 + 0.3*g = 0.65 g.
	g := []float32{1, 3, 2, 2}
	c := []float32{0, 1, 5, 5}
	RescaleGuidance(g, c, 2, 0.7)
	want := []float32{0.65, 1.95, 2, 2} // second row: std 0, left alone
	for i := range g {
		if math.Abs(float64(g[i]-want[i])) > 1e-6 {
			t.Errorf("rescaled %v, want %v", g, want)
			break
		}
	}
}

// TestSDXLZerosForEmptyNegative: force_zeros_for_empty_prompt gives zeros for an empty negative
// prompt, and the pooled embeddings travel in Cond.
func TestSDXLZerosForEmptyNegative(t *testing.T) {
	p := open(t, synth.SDXL, Options{})
	ctx := context.Background()
	c, err := p.Condition(ctx, nil, "a red apple", pipelines.CondOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Vector) != 77*int(p.unet.ehsWidth) || len(c.Pooled) != int(p.unet.pooledWidth) {
		t.Fatalf("vector %d and pooled %d values, want 77x%d and %d", len(c.Vector), len(c.Pooled), p.unet.ehsWidth, p.unet.pooledWidth)
	}
	for _, v := range append(append([]float32(nil), c.NullVector...), c.NullPooled...) {
		if v != 0 {
			t.Fatalf("empty negative prompt gave a non-zero embedding")
		}
	}
	c, err = p.Condition(ctx, nil, "a red apple", pipelines.CondOptions{Negative: "blurry"})
	if err != nil {
		t.Fatal(err)
	}
	if c.NullVector[0] == 0 && c.NullPooled[0] == 0 {
		t.Errorf("a negative prompt gave a zero embedding")
	}
}

// TestDecodeEncodeAndPreview runs the VAE both ways and the preview decoder.
func TestDecodeEncodeAndPreview(t *testing.T) {
	for _, v := range []synth.SDVariant{synth.SD15, synth.SD15Optimum} {
		t.Run(string(v), func(t *testing.T) {
			dir := export(t, v)
			p := open(t, v, Options{PreviewDecoder: filepath.Join(dir, "vae_decoder", "model.onnx")})
			info := p.Info()
			ctx := context.Background()
			x := make([]float32, 2*info.Len())
			for i := range x {
				x[i] = float32(math.Cos(float64(i) * 0.11))
			}
			full := pixels.NewImages(2, 3, 64, 64)
			prev := pixels.NewImages(2, 3, 64, 64)
			if err := p.Decode(ctx, nil, x, 2, full); err != nil {
				t.Fatal(err)
			}
			if err := p.Preview(ctx, nil, x, 2, prev); err != nil {
				t.Fatal(err)
			}
			if err := full.Validate(); err != nil {
				t.Fatal(err)
			}
			same := true
			for i := range full.Pix {
				same = same && full.Pix[i] == prev.Pix[i]
			}
			if same {
				t.Errorf("preview decoder output equals the VAE's: it was not used (or not given the latents unscaled)")
			}
			lat := make([]float32, 2*info.Len())
			if err := p.Encode(ctx, nil, full, lat); err != nil {
				t.Fatal(err)
			}
			for _, l := range lat {
				if math.IsNaN(float64(l)) {
					t.Fatal("encode gave NaN")
				}
			}
		})
	}
}

// TestBrokenFolders: every broken export gets one error naming what is wrong.
func TestBrokenFolders(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(dir string) error
		want    string
	}{
		{"no model index", func(d string) error { return os.Remove(filepath.Join(d, "model_index.json")) }, "model_index.json"},
		{"unknown pipeline", func(d string) error {
			return os.WriteFile(filepath.Join(d, "model_index.json"), []byte(`{"_class_name": "KandinskyPipeline"}`), 0o644)
		}, "KandinskyPipeline"},
		{"no unet", func(d string) error { return os.Remove(filepath.Join(d, "unet", "model.onnx")) }, "unet/model.onnx is missing"},
		{"garbage unet", func(d string) error {
			return os.WriteFile(filepath.Join(d, "unet", "model.onnx"), []byte("not a model"), 0o644)
		}, "unet"},
		{"no external weights", func(d string) error { return os.Remove(filepath.Join(d, "unet", "model.onnx_data")) }, "unet"},
		{"no tokenizer", func(d string) error { return os.RemoveAll(filepath.Join(d, "tokenizer")) }, "tokenizer"},
		{"bad scheduler", func(d string) error {
			return os.WriteFile(filepath.Join(d, "scheduler", "scheduler_config.json"), []byte(`{"_class_name": "PNDMScheduler", "beta_start": "x"}`), 0o644)
		}, "beta_start"},
		{"foreign text encoder", func(d string) error {
			return copyFile(filepath.Join(exportsDir, string(synth.SDXL), "text_encoder_2", "model.onnx"), filepath.Join(d, "text_encoder", "model.onnx"))
		}, "encoder_hidden_states"},
		{"bad vae config", func(d string) error {
			return os.WriteFile(filepath.Join(d, "vae_decoder", "config.json"), []byte(`{"scaling_factor": -1}`), 0o644)
		}, "scaling_factor"},
	}
	src := export(t, synth.SD15)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "sd15")
			if err := copyDir(src, dir); err != nil {
				t.Fatal(err)
			}
			if err := c.breakIt(dir); err != nil {
				t.Fatal(err)
			}
			p, err := Open(dir, Options{})
			if err == nil {
				p.Close()
				t.Fatalf("opened a broken export")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
	t.Run("image-to-image without vae_encoder", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "sd15")
		if err := copyDir(src, dir); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "vae_encoder")); err != nil {
			t.Fatal(err)
		}
		p, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		err = p.Encode(context.Background(), nil, pixels.NewImages(1, 3, 64, 64), make([]float32, p.Info().Len()))
		if err == nil || !strings.Contains(err.Error(), "vae_encoder/model.onnx is missing") {
			t.Errorf("encode without a VAE encoder: %v", err)
		}
	})
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		return copyFile(path, filepath.Join(dst, rel))
	})
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// TestSchedulerOverride: --scheduler replaces the folder's class, also one fksteer does not
// reproduce, keeping its betas and prediction type.
func TestSchedulerOverride(t *testing.T) {
	p := open(t, synth.SD2V, Options{Scheduler: "euler"})
	if p.sched.Kind != schedule.EulerScheduler || p.Info().Defaults.Sampler != "euler" || p.Info().Prediction != pipelines.PredictV {
		t.Errorf("override gave scheduler %s, sampler %s, prediction %s; want euler, euler, v", p.sched.Kind, p.Info().Defaults.Sampler, p.Info().Prediction)
	}
	levels, err := p.Schedule(10)
	if err != nil || !levels[10].Clean() {
		t.Errorf("Euler grid %v (%v) does not end clean", levels, err)
	}

	dir := filepath.Join(t.TempDir(), "unipc")
	if err := copyDir(export(t, synth.SD15), dir); err != nil {
		t.Fatal(err)
	}
	cfg := `{"_class_name": "UniPCMultistepScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon"}`
	if err := os.WriteFile(filepath.Join(dir, "scheduler", "scheduler_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "--scheduler") {
		t.Errorf("UniPC without an override: %v, want an error naming --scheduler", err)
	}
	q, err := Open(dir, Options{Scheduler: "dpm++2m"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.sched.Kind != schedule.DPMSolverScheduler {
		t.Errorf("scheduler %s, want dpm++2m", q.sched.Kind)
	}
}

// TestConditioningIsRefilled: a prepared call reused for another prompt gets that prompt's
// conditioning, not the one it last held.
func TestConditioningIsRefilled(t *testing.T) {
	ctx := context.Background()
	p := open(t, synth.SDXL, Options{})
	a, err := p.Condition(ctx, nil, "a red apple", pipelines.CondOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Condition(ctx, nil, "a blue car", pipelines.CondOptions{Negative: "blurry"})
	if err != nil {
		t.Fatal(err)
	}
	predict(t, p, a, 5, 2)
	_, _, reused := predict(t, p, b, 5, 2)
	fresh := open(t, synth.SDXL, Options{})
	_, _, want := predict(t, fresh, b, 5, 2)
	if !slices.Equal(reused, want) {
		t.Errorf("a reused call predicts differently from a fresh one for the same prompt")
	}
}
