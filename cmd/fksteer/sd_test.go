package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/rewards"
)

var (
	sdOnce sync.Once
	sdErr  error
)

// sdExport returns the folder of the synthetic export of variant v, written once per test
// binary into the package's temporary cache.
func sdExport(t *testing.T, v synth.SDVariant) string {
	t.Helper()
	modeltest.Runtime(t)
	root := filepath.Join(os.Getenv("FKSTEER_CACHE"), "sd-exports")
	sdOnce.Do(func() {
		for _, v := range synth.SDVariants {
			if sdErr == nil {
				sdErr = synth.WriteSD(filepath.Join(root, string(v)), v, synth.SDOptions{})
			}
		}
	})
	if sdErr != nil {
		t.Fatal(sdErr)
	}
	return filepath.Join(root, string(v))
}

// generateJSON runs generate with --json and returns its decoded output.
func generateJSON(t *testing.T, args ...string) (images []generation.Written, stats summary) {
	t.Helper()
	code, out, stderr := cli(t, "", append([]string{"generate", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("generate %v: exit %d\n%s", args, code, stderr)
	}
	var res struct {
		Images []generation.Written `json:"images"`
		Stats  summary              `json:"stats"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("generate output %q: %v", out, err)
	}
	return res.Images, res.Stats
}

// TestSDVariantsGenerate runs every synthetic export variant through generate, best-of-N and
// FK, each with a stochastic sampler where steering needs one.
func TestSDVariantsGenerate(t *testing.T) {
	// The stochastic step rule each variant's FK run uses (LCM's own step draws fresh noise).
	stochastic := map[synth.SDVariant][]string{
		synth.SD15:        {"--sampler", "ddim", "--eta", "1"},
		synth.SD15Optimum: {"--sampler", "ddpm"},
		synth.SD15FP16:    {"--sampler", "ddim", "--eta", "1"},
		synth.SD2V:        {"--sampler", "ddim", "--eta", "1"},
		synth.SDTurbo:     {"--sampler", "euler-a", "--eta", "1"},
		synth.SDXL:        {"--sampler", "euler-a", "--eta", "1"},
		synth.LCM:         {},
	}
	reward := "color:target=#cc2222"
	for _, v := range synth.SDVariants {
		t.Run(string(v), func(t *testing.T) {
			dir := sdExport(t, v)
			out := t.TempDir()
			// The model's defaults (SD-Turbo: 1 step without guidance; LCM: 4 steps).
			imgs, st := generateJSON(t, "--model", dir, "--prompt", "a red apple", "--steps", "6", "--out", filepath.Join(out, "base"))
			if len(imgs) != 1 || st.ModelCalls != 6 {
				t.Errorf("base: %d images, %d UNet calls; want 1 and 6", len(imgs), st.ModelCalls)
			}
			checkPNG(t, imgs[0].Path, 64, 64)
			imgs, st = generateJSON(t, "--model", dir, "--prompt", "a red apple", "--steps", "6", "--method", "bon", "--particles", "3",
				"--reward", reward, "--out", filepath.Join(out, "bon"))
			if len(imgs) != 1 || st.ModelCalls != 6 || st.RewardCalls != 1 {
				t.Errorf("bon: %d images, %d UNet calls, %d reward calls; want 1, 6, 1", len(imgs), st.ModelCalls, st.RewardCalls)
			}
			args := append([]string{"--model", dir, "--prompt", "a red apple", "--steps", "6", "--method", "fk", "--particles", "3",
				"--reward", reward, "--resample-every", "2", "--resample-end", "4", "--out", filepath.Join(out, "fk")}, stochastic[v]...)
			imgs, st = generateJSON(t, args...)
			// Evaluations at steps 2 and 4 and the final one.
			if len(imgs) != 1 || st.ModelCalls != 6 || st.RewardCalls != 3 {
				t.Errorf("fk: %d images, %d UNet calls, %d reward calls; want 1, 6, 3", len(imgs), st.ModelCalls, st.RewardCalls)
			}
			checkPNG(t, imgs[0].Path, 64, 64)
		})
	}
}

func checkPNG(t *testing.T, path string, w, h int) {
	t.Helper()
	img, err := rewards.LoadImage(path)
	if err != nil {
		t.Fatal(err)
	}
	if img.W != w || img.H != h {
		t.Errorf("%s is %dx%d, want %dx%d", path, img.W, img.H, w, h)
	}
}

// TestSDImageToImage starts from an image: strength 0.5 of 10 steps runs the last 5, and the
// start image's name, hash and strength are recorded.
func TestSDImageToImage(t *testing.T) {
	dir := sdExport(t, synth.SD15)
	tmp := t.TempDir()
	start := filepath.Join(tmp, "start.png")
	img := image.NewRGBA(image.Rect(0, 0, 100, 80))
	for y := range 80 {
		for x := range 100 {
			img.Set(x, y, color.RGBA{uint8(2 * x), uint8(3 * y), 90, 255})
		}
	}
	f, err := os.Create(start)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	f.Close()
	imgs, st := generateJSON(t, "--model", dir, "--prompt", "a red apple", "--steps", "10", "--init-image", start, "--strength", "0.5", "--out", tmp)
	if st.ModelCalls != 5 {
		t.Errorf("strength 0.5 of 10 steps made %d UNet calls, want 5", st.ModelCalls)
	}
	params := readParameters(t, imgs[0].Path)
	for _, want := range []string{"Init image: start.png", "Denoising strength: 0.5", "Scheduler: pndm"} {
		if !strings.Contains(params, want) {
			t.Errorf("parameters %q lack %q", params, want)
		}
	}
	code, _, stderr := cli(t, "", "generate", "--model", dir, "--init-image", start, "--strength", "1.5", "--out", tmp)
	wantError(t, code, stderr, 2, "strength")
}

// TestSDKeysNeedAnSDModel: Stable Diffusion's own settings are refused for other models.
func TestSDKeysNeedAnSDModel(t *testing.T) {
	modeltest.Runtime(t)
	code, _, stderr := cli(t, "", "generate", "--scheduler", "euler", "--out", t.TempDir())
	wantError(t, code, stderr, 2, "--scheduler", "Stable Diffusion")
	code, _, stderr = cli(t, "", "generate", "--model", t.TempDir(), "--out", t.TempDir())
	wantError(t, code, stderr, 1, "model_index.json")
}

// readParameters returns the "parameters" text chunk of a PNG file.
func readParameters(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := pngtext.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Key == "parameters" {
			return e.Text
		}
	}
	t.Fatalf("%s has no parameters chunk", path)
	return ""
}

// TestSDBatchingDoesNotChangeImages: the same seeds give the same bytes whether images are
// sampled one per batch or together, with guidance's doubled batch and FK's resampling.
func TestSDBatchingDoesNotChangeImages(t *testing.T) {
	dir := sdExport(t, synth.SD15)
	tmp := t.TempDir()
	var files [2][]string
	for i, bs := range []string{"1", "3"} {
		imgs, _ := generateJSON(t, "--model", dir, "--prompt", "a red apple", "--negative-prompt", "blurry", "--steps", "6",
			"--num-images", "3", "--batch-size", bs, "--scheduler", "dpm++2m", "--out", filepath.Join(tmp, bs))
		for _, img := range imgs {
			files[i] = append(files[i], img.Path)
		}
	}
	for i := range files[0] {
		a, errA := os.ReadFile(files[0][i])
		b, errB := os.ReadFile(files[1][i])
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("image %d differs between batch sizes 1 and 3", i)
		}
	}
	params := readParameters(t, files[0][0])
	for _, want := range []string{"Negative prompt: blurry", "Scheduler: dpm++2m", "Sampler: dpm++2m"} {
		if !strings.Contains(params, want) {
			t.Errorf("parameters %q lack %q", params, want)
		}
	}
}

// TestSDPreviewDecoder steers with a preview decoder for the intermediate rewards.
func TestSDPreviewDecoder(t *testing.T) {
	dir := sdExport(t, synth.SDTurbo)
	imgs, st := generateJSON(t, "--model", dir, "--prompt", "a red apple", "--steps", "4", "--sampler", "euler-a", "--eta", "1",
		"--method", "fk", "--particles", "4", "--reward", "color:target=#cc2222", "--resample-every", "1", "--resample-end", "2",
		"--preview-decoder", filepath.Join(dir, "vae_decoder", "model.onnx"), "--out", t.TempDir())
	// Evaluations at steps 1 and 2 (previews) and the final one (the VAE).
	if len(imgs) != 1 || st.RewardCalls != 3 {
		t.Errorf("%d images, %d reward calls; want 1 and 3", len(imgs), st.RewardCalls)
	}
	code, _, stderr := cli(t, "", "generate", "--model", dir, "--preview-decoder", filepath.Join(t.TempDir(), "missing.onnx"), "--out", t.TempDir())
	wantError(t, code, stderr, 1, "missing.onnx")
}

// TestSDInspect: models inspect opens the export and says how it will run.
func TestSDInspect(t *testing.T) {
	dir := sdExport(t, synth.LCM)
	code, out, stderr := cli(t, "", "models", "inspect", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "Stable Diffusion (lcm): lcm scheduler, epsilon prediction, 64x64 images, defaults 4 steps, guidance 8.5") {
		t.Errorf("inspect output lacks the pipeline summary:\n%s", out)
	}
}

// TestSDSearchMethods runs the search methods on Stable Diffusion exports: svdd, beam, dts and
// dts-star on SD 1.5 with guidance (a guided row counts 2 NFE), each within its budget, and
// noise search, the default with a reward on a deterministic sampler, on 1-step SD-Turbo.
func TestSDSearchMethods(t *testing.T) {
	reward := "color:target=#cc2222"
	dir, out := sdExport(t, synth.SD15), t.TempDir()
	const steps, budget = 4, 4 * 4 * 2
	for _, m := range []string{"svdd", "beam", "dts", "dts-star"} {
		imgs, st := generateJSON(t, "--model", dir, "--prompt", "a red apple", "--steps", fmt.Sprint(steps), "--guidance", "5",
			"--sampler", "ddim", "--eta", "1", "--method", m, "--budget", fmt.Sprint(budget), "--reward", reward,
			"--out", filepath.Join(out, m))
		if len(imgs) != 1 || st.NFE > budget || st.NFE < budget/2 {
			t.Errorf("%s: %d images, %d NFE of a budget of %d", m, len(imgs), st.NFE, budget)
		}
		checkPNG(t, imgs[0].Path, 64, 64)
	}
	imgs, st := generateJSON(t, "--model", sdExport(t, synth.SDTurbo), "--prompt", "a red apple", "--sampler", "euler",
		"--budget", "8", "--reward", reward, "--out", filepath.Join(out, "turbo"))
	// One step, no guidance: 2 rounds of 4 noises.
	if len(imgs) != 1 || st.NFE != 8 || st.ModelCalls != 2 {
		t.Errorf("noise search on SD-Turbo: %d images, %d NFE in %d UNet calls; want 1, 8, 2", len(imgs), st.NFE, st.ModelCalls)
	}
}
