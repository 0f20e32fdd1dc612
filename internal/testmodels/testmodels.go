// Package testmodels opens the models that several packages' tests run: the real MNIST DiT
// (through the repository's example manifest), the real MNIST classifier as a judge, and the
// built-in glyphs model. Each skips the test with testenv's message when what it needs is absent.
package testmodels

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/rewards"
)

// MNIST opens the real MNIST rectified-flow DiT through examples/mnist-dit-rf.yaml, pointed at
// the model in the shared folder. It is closed when the test ends.
func MNIST(tb testing.TB) *pipelines.Denoiser {
	tb.Helper()
	modeltest.Runtime(tb)
	model := testenv.SharedFile(tb, "models/mnist-dit-rf/model.onnx")
	data, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "examples", "mnist-dit-rf.yaml"))
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

// MNISTJudge is the real MNIST classifier as an independent reader of generated digits:
// centre-crop 32 -> 28, pixels mapped to [-1, 1].
func MNISTJudge(tb testing.TB) *rewards.Classifier {
	tb.Helper()
	modeltest.Runtime(tb)
	path := testenv.SharedFile(tb, "models/mnist-cnn-classifier/mnist-8.onnx")
	c, err := rewards.NewClassifier(path, rewards.ClassifierOptions{Target: 0, Crop: 28, Mean: 0.5, Std: 0.5, Score: rewards.LogProb})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Glyphs opens the built-in model, building it into a per-test cache.
func Glyphs(tb testing.TB) *pipelines.Denoiser {
	tb.Helper()
	modeltest.Runtime(tb)
	p, err := pipelines.OpenGlyphs(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}
