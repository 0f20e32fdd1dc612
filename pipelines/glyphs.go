package pipelines

import (
	"context"
	"fmt"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/glyphs"
	"github.com/fksteer/fksteer/schedule"
)

// GlyphsName is the name under which the built-in glyphs model is selected (`--model glyphs`,
// and the default).
const GlyphsName = "glyphs"

// GlyphsManifest describes the built-in glyphs model stored at modelPath. The model is the exact
// posterior mean E[x0 | x_t] of a prompt-selected mixture of rendered images (see package
// models/glyphs), in rectified-flow time; it is conditioned on the prompt's prior over those
// images, which the glyph-tags encoder computes.
func GlyphsManifest(modelPath string) *Manifest {
	one := 1.0
	return &Manifest{
		Name:  GlyphsName,
		Model: modelPath,
		Inputs: ManifestInputs{
			Sample: glyphs.InputX, Time: glyphs.InputT, Cond: glyphs.InputPrior,
		},
		Output:     glyphs.OutputX0,
		Prediction: string(PredictX0),
		Sample:     ManifestSample{Shape: []int{3, 32, 32}, Range: []float64{-1, 1}},
		// The data images are far apart in 3072 dimensions (a background change moves ~900 pixels
		// by 1), so the posterior already decides between them at t > 0.95. A uniform t grid
		// spends one step there and the sampler then over-picks images near the data mean
		// (total variation 0.36 from the prior at 20 steps); shift 20 (log-SNR offset by log 20)
		// moves the steps to where the decision happens and brings that to ~0.03.
		Time: ManifestTime{Kind: "continuous", Noise: &one, Scale: 1, Shift: 20},
		Conditioning: ManifestConditioning{
			Kind: string(VectorCond), Encoder: "glyph-tags",
		},
		// The denoiser is exactly conditional, so guidance is off; a stochastic sampler by default
		// lets FK steering work without extra flags.
		Defaults: Defaults{Steps: 50, Guidance: 1, Sampler: schedule.DDIMRule, Eta: 1},
	}
}

// OpenGlyphs opens the built-in glyphs model, writing its ONNX file into cacheDir on first use.
func OpenGlyphs(cacheDir string, opts ...models.Option) (*Denoiser, error) {
	path, err := glyphs.EnsureModel(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("build the glyphs model: %w", err)
	}
	m := GlyphsManifest(path)
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("glyphs manifest: %w", err)
	}
	enc, err := newGlyphEncoder()
	if err != nil {
		return nil, err
	}
	return NewDenoiser(m, enc, opts...)
}

// glyphEncoder is the glyphs model's "text encoder": the prompt's log prior over the data set.
type glyphEncoder struct{ d *glyphs.Dataset }

func newGlyphEncoder() (VectorEncoder, error) {
	d, err := glyphs.Load()
	if err != nil {
		return nil, fmt.Errorf("render the glyphs data set: %w", err)
	}
	return glyphEncoder{d}, nil
}

func (e glyphEncoder) Encode(_ context.Context, prompt string) ([]float32, error) {
	return e.d.LogPrior(prompt), nil
}

func (e glyphEncoder) Width() int { return e.d.Len() }
