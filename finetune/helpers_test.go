package finetune_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/schedule"
)

// glyphsCache holds the built-in model, built once for the package's tests.
var glyphsCache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fksteer-finetune-test-")
	if err != nil {
		panic(err)
	}
	glyphsCache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// openGlyphs opens the built-in glyphs model, or skips without ONNX Runtime.
func openGlyphs(tb testing.TB) *pipelines.Denoiser {
	tb.Helper()
	modeltest.Runtime(tb)
	p, err := pipelines.OpenGlyphs(glyphsCache)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// redSpec is the colour reward the tests train toward.
const redSpec = "color:target=#cc2222"

func redness(tb testing.TB) rewards.Reward {
	tb.Helper()
	r, err := rewards.Parse(redSpec, rewards.Env{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// glyphOptions is a small, fast export on the glyphs model: 8 steps of the stochastic flow step.
func glyphOptions(tb testing.TB, mode finetune.Mode, out string, prompts ...string) finetune.Options {
	tb.Helper()
	return finetune.Options{
		Mode: mode, Out: out, Prompts: prompts, Samples: 4,
		Sampling: finetune.Sampling{Steps: 8, Rule: schedule.DDIMRule, Eta: 1, Seed: 100},
		Reward:   redness(tb), RewardSpec: redSpec,
	}
}

func export(tb testing.TB, p pipelines.Pipeline, o finetune.Options) *finetune.Summary {
	tb.Helper()
	s, err := finetune.Export(context.Background(), p, o)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func openDataset(tb testing.TB, dir string) *finetune.Dataset {
	tb.Helper()
	d, err := finetune.OpenDataset(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

var errRefused = errors.New("refused")

// failOn is a reward that fails on one prompt, as a reward whose model breaks would.
type failOn struct {
	rewards.Reward
	prompt string
}

func (f failOn) Score(ctx context.Context, imgs pixels.Images, prompt string, dst []float64) error {
	if prompt == f.prompt {
		return errRefused
	}
	return f.Reward.Score(ctx, imgs, prompt, dst)
}
