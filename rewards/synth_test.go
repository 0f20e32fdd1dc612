package rewards_test

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
)

// Helpers for the tests that run rewards on the synthetic models of models/synth.

// writeModel writes a built model into the test's temporary folder and returns its path.
func writeModel(t testing.TB, name string, data []byte, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	modeltest.Runtime(t)
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// randomImages returns n seeded images in [0, 1].
func randomImages(seed uint64, n, c, h, w int) pixels.Images {
	rng := rand.New(rand.NewPCG(seed, 2))
	imgs := pixels.NewImages(n, c, h, w)
	for i := range imgs.Pix {
		imgs.Pix[i] = float32(rng.Float64())
	}
	return imgs
}

// normalised returns imgs normalised per channel as (v - mean[c]) / std[c], NCHW: the model
// input of images already at the model's size.
func normalised(imgs pixels.Images, mean, std []float64) []float32 {
	out := make([]float32, len(imgs.Pix))
	plane := imgs.H * imgs.W
	for i, v := range imgs.Pix {
		c := (i / plane) % imgs.C
		out[i] = float32((float64(v) - mean[c]) / std[c])
	}
	return out
}

// runModel runs a session on the given inputs (float32 or int64 data with shapes) and returns
// the named float outputs.
func runModel(t testing.TB, path string, floats map[string][]float32, ints map[string][]int64, shapes models.Shapes, outputs ...string) [][]float32 {
	t.Helper()
	s, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	call, err := s.NewCall(shapes)
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	for name, v := range floats {
		buf, err := call.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		copy(buf, v)
	}
	for name, v := range ints {
		buf, err := call.Int64(name)
		if err != nil {
			t.Fatal(err)
		}
		copy(buf, v)
	}
	if err := call.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var res [][]float32
	for _, name := range outputs {
		out, _, err := call.Output(name)
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, append([]float32(nil), out...))
	}
	return res
}

// cos64 is the cosine similarity of two float32 vectors, in float64.
func cos64(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}
