package main

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
)

// maxPixelDiff is the largest per-channel difference, in 8-bit levels, allowed between an image
// generated on WebGPU and the same image generated on the CPU. The denoisers agree to ~1e-6
// (models' conformance suite); over a whole trajectory the difference grows but stays far
// below one level, so a pixel may only round the other way.
const maxPixelDiff = 1

// TestGenerateOnWebGPUMatchesCPU runs generate on both providers, plain and steered, on the
// built-in model and the real MNIST DiT: FK must select the same particles and every image must
// match the CPU's within maxPixelDiff.
func TestGenerateOnWebGPUMatchesCPU(t *testing.T) {
	modeltest.WebGPU(t)
	mnist := filepath.Join(testenv.ModuleRoot(), "examples", "mnist-dit-rf.yaml")
	testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	classifier := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"glyphs-base", []string{"--prompt", `"A"`, "--num-images", "2", "--steps", "20"}},
		{"glyphs-fk", []string{"--prompt", `"A"`, "--num-images", "2", "--steps", "20", "--method", "fk", "--particles", "4", "--reward", "color:target=#cc2222"}},
		{"mnist-base", []string{"--model", mnist, "--prompt", "3", "--num-images", "2", "--steps", "10"}},
		{"mnist-fk", []string{"--model", mnist, "--num-images", "2", "--steps", "10", "--sampler", "ddim", "--eta", "1",
			"--method", "fk", "--particles", "4", "--resample-every", "2", "--reward", "classifier:model=" + classifier + ",target=3,crop=28"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results := map[string][]generation.Written{}
			for _, p := range []string{"cpu", "webgpu"} {
				out := filepath.Join(t.TempDir(), p)
				results[p], _ = generateJSON(t, append([]string{"--provider", p, "--out", out, "--seed", "5"}, tc.args...)...)
			}
			cpu, gpu := results["cpu"], results["webgpu"]
			if len(cpu) != len(gpu) || len(cpu) == 0 {
				t.Fatalf("cpu wrote %d images, webgpu %d", len(cpu), len(gpu))
			}
			for i := range cpu {
				c, g := cpu[i], gpu[i]
				if c.Particle != g.Particle {
					t.Errorf("image %d: cpu selected particle %d, webgpu %d", i, c.Particle, g.Particle)
				}
				d := pixelDiff(t, c.Path, g.Path)
				t.Logf("image %d: particle %d, reward cpu %.6g webgpu %.6g, max pixel difference %d", i, c.Particle, c.Reward, g.Reward, d)
				if d > maxPixelDiff {
					t.Errorf("image %d differs by %d levels (tolerance %d)", i, d, maxPixelDiff)
				}
			}
		})
	}
}

// pixelDiff returns the largest per-channel difference of two images of the same size.
func pixelDiff(t *testing.T, a, b string) int {
	t.Helper()
	ia, ib := readImage(t, a), readImage(t, b)
	if ia.Bounds() != ib.Bounds() {
		t.Fatalf("%s is %v, %s is %v", a, ia.Bounds(), b, ib.Bounds())
	}
	worst := 0
	r := ia.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, _ := ia.At(x, y).RGBA()
			r2, g2, b2, _ := ib.At(x, y).RGBA()
			for _, d := range []int{int(r1>>8) - int(r2>>8), int(g1>>8) - int(g2>>8), int(b1>>8) - int(b2>>8)} {
				worst = max(worst, d, -d)
			}
		}
	}
	return worst
}

func readImage(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
