// Package pipelinetest opens the denoisers that several packages' tests run (sampler, bench,
// finetune), in the manner of net/http/httptest: the real MNIST DiT through the repository's
// example manifest, and the built-in glyphs model. Each skips the test with modeltest's or
// testenv's message when what it needs is absent, and closes what it opened when the test ends.
package pipelinetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pipelines"
)

// MNIST opens the real MNIST rectified-flow DiT through examples/mnist-dit-rf.yaml, pointed at
// the model in the shared folder.
func MNIST(tb testing.TB) *pipelines.Denoiser {
	tb.Helper()
	return modeltest.Open(tb, func() (*pipelines.Denoiser, error) {
		model := testenv.SharedFile(tb, "models/mnist-dit-rf/model.onnx")
		data, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "examples", "mnist-dit-rf.yaml"))
		if err != nil {
			return nil, err
		}
		m, err := pipelines.ParseManifest(data)
		if err != nil {
			return nil, err
		}
		m.Model = model
		return pipelines.NewDenoiser(m, nil)
	})
}

// Glyphs opens the built-in model, building it into a per-test cache.
func Glyphs(tb testing.TB) *pipelines.Denoiser {
	tb.Helper()
	return modeltest.Open(tb, func() (*pipelines.Denoiser, error) { return pipelines.OpenGlyphs(tb.TempDir()) })
}
