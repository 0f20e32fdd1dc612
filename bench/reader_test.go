package bench_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/fksteer/fksteer/bench"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/pipelines/pipelinetest"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// TestReaderReadsConditionalSamples: the k-NN reader must read the DiT's class-conditional
// samples (which the CNN reads 40/40, see sampler's tests) as their digit most of the time, or
// it could not vouch for steered outputs. 20 samples, 2 per digit; at least 18 must be read right.
func TestReaderReadsConditionalSamples(t *testing.T) {
	p := pipelinetest.MNIST(t)
	dir := filepath.Dir(testenv.SharedFile(t, "models/mnist-cnn-classifier/t10k-labels-idx1-ubyte"))
	reader, err := bench.LoadReader(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), filepath.Join(dir, "t10k-labels-idx1-ubyte"), 5)
	if err != nil {
		t.Fatal(err)
	}
	right := 0
	for digit := range 10 {
		res, err := sampler.Run(context.Background(), p, sampler.Config{Prompt: fmt.Sprint(digit), Steps: 50, Guidance: 2, Rule: schedule.EulerRule, Seed: uint64(digit), Images: 2, Particles: 1})
		if err != nil {
			t.Fatal(err)
		}
		read, err := reader.Read(context.Background(), res.Images)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range read {
			if r == digit {
				right++
			}
		}
	}
	t.Logf("k-NN reader: %d/20 conditional samples read as their digit", right)
	if right < 18 {
		t.Errorf("k-NN reader read only %d/20 conditional samples right", right)
	}
}

func TestWilsonInterval(t *testing.T) {
	// Reference values computed independently (the closed form in Python), z = 1.959964:
	// 0/8 -> [0, 0.3244]; 45/64 -> [0.5823, 0.8009].
	for _, c := range []struct {
		s, n   int
		lo, hi float64
	}{{0, 8, 0, 0.3244}, {45, 64, 0.5823, 0.8009}} {
		lo, hi := bench.Rate{Successes: c.s, Runs: c.n}.Wilson()
		if d := max(abs(lo-c.lo), abs(hi-c.hi)); d > 5e-4 {
			t.Errorf("Wilson(%d/%d) = [%.4f, %.4f], want [%.4f, %.4f]", c.s, c.n, lo, hi, c.lo, c.hi)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
