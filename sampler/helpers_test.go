package sampler_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/rewards"
)

// openMNIST opens the real MNIST rectified-flow DiT through the repository's example manifest,
// pointed at the model in the shared folder.
func openMNIST(tb testing.TB) *pipelines.Denoiser {
	tb.Helper()
	testenv.Runtime(tb)
	model := testenv.SharedFile(tb, "models/mnist-dit-rf/model.onnx")
	data, err := os.ReadFile(filepath.Join("..", "examples", "mnist-dit-rf.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := pipelines.ParseManifest(data)
	if err != nil {
		tb.Fatal(err)
	}
	m.Model = model
	p, err := pipelines.NewDenoiser(m, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// mnistJudge is the real MNIST classifier, used as an independent reader of generated digits:
// centre-crop 32 -> 28, pixels mapped to [-1, 1].
func mnistJudge(tb testing.TB) *rewards.Classifier {
	tb.Helper()
	testenv.Runtime(tb)
	path := testenv.SharedFile(tb, "models/mnist-cnn-classifier/mnist-8.onnx")
	c, err := rewards.NewClassifier(path, rewards.ClassifierOptions{Target: 0, Crop: 28, Mean: 0.5, Std: 0.5, Score: rewards.LogProb})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// openGlyphs opens the built-in model, building it into a per-test cache.
func openGlyphs(tb testing.TB) *pipelines.Denoiser {
	tb.Helper()
	testenv.Runtime(tb)
	p, err := pipelines.OpenGlyphs(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// skipUnderRace skips a large statistical test in the race-detector pass; see raceEnabled.
func skipUnderRace(tb testing.TB) {
	tb.Helper()
	if raceEnabled {
		tb.Skip("large statistical test: runs without -race (make test's second pass)")
	}
}
