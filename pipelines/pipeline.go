// Package pipelines turns prompts into conditioning and runs diffusion denoisers on batches of
// particles: it calls the model (with classifier-free guidance as one doubled batch), converts
// whatever the model predicts (epsilon, v, x0 or flow velocity) into the pair (x0, eps) that
// every step rule in sampler/ consumes, and decodes states to images.
//
// One interface, several implementations: a single-file denoiser described by a YAML manifest
// ([LoadManifest], [OpenManifest]) and the built-in glyphs model ([OpenGlyphs]). pipelines knows
// nothing about particles, potentials or steering.
package pipelines

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fksteer/fksteer/internal/enum"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/schedule"
)

// Pipeline is a diffusion model ready to sample: it predicts x0 and eps for a batch of states and
// decodes clean states to images. Implementations are safe for concurrent use by several
// goroutines, each driving its own batch.
//
// Every method that may run a model takes st, the Stats of the run it works for: it adds its
// model calls and their time inside ONNX Runtime there (see [Stats]), so that a run that
// shares its pipeline with others (batch workers) learns its own figures. st may be nil, and
// no two goroutines may pass the same st at once.
type Pipeline interface {
	// Info describes the model.
	Info() Info
	// Schedule returns the steps+1 noise levels a sampler walks, from the noisiest to the last.
	Schedule(steps int) ([]schedule.Level, error)
	// Condition turns a prompt (and the class override in opts) into conditioning.
	Condition(ctx context.Context, st *Stats, prompt string, opts CondOptions) (Cond, error)
	// Predict runs the denoiser on n states x (n*Info().Len() values) at level lvl and writes
	// the predicted clean states to x0 and the predicted noise to eps. With guidance > 1 and a
	// conditional c it runs one batch of 2n rows [unconditional; conditional] and combines the
	// outputs as u + guidance*(c - u). A NaN or Inf in the model's output is an error.
	Predict(ctx context.Context, st *Stats, x []float32, n int, lvl schedule.Level, c Cond, guidance float64, x0, eps []float32) error
	// Decode turns n clean states into images in [0, 1]; dst must hold n images of Info's size.
	Decode(ctx context.Context, st *Stats, x []float32, n int, dst pixels.Images) error
	// Stats reports the model calls made so far and the time spent inside ONNX Runtime.
	Stats() Stats
	// Close releases the model's sessions.
	Close() error
}

// Info describes a pipeline's model.
type Info struct {
	Name string
	// Path is the model file or folder, Hash the hex sha256 of its model file.
	Path, Hash string
	// Channels, Height and Width of one sample state.
	Channels, Height, Width int
	// ImageChannels, ImageHeight and ImageWidth of a decoded image.
	ImageChannels, ImageHeight, ImageWidth int
	Prediction                             Prediction
	Conditioning                           CondKind
	// Classes names a class-conditional model's classes in id order, and NullClass is its
	// unconditional class id; front ends check a class override against them before sampling.
	Classes   []string
	NullClass int64
	// Negative reports whether Condition applies CondOptions.Negative.
	Negative bool
	Defaults Defaults
	// Settings are the options the pipeline was opened with that decide its outputs, as
	// (name, value) pairs for provenance: Stable Diffusion's scheduler and guidance rescale.
	Settings [][2]string
}

// Len is the number of values in one sample state.
func (i Info) Len() int { return i.Channels * i.Height * i.Width }

// Defaults are a model's recommended sampling settings.
type Defaults struct {
	Steps    int     `yaml:"steps"`
	Guidance float64 `yaml:"guidance"`
	// Sampler is the step rule; "" when the model recommends none. A manifest's is parsed
	// when the manifest is read, so it is always one of [schedule.Rules].
	Sampler schedule.Rule `yaml:"sampler"`
	Eta     float64       `yaml:"eta"`
}

// Stats counts model calls: the denoiser's (ModelCalls, ModelTime), and those of a pipeline's
// other models (text encoders, VAE decoder and encoder), whose time is also spent inside ONNX
// Runtime. A run's own figures are what its pipeline calls added to the Stats it passed them;
// [Pipeline.Stats] counts the denoiser's calls over the pipeline's life.
type Stats struct {
	ModelCalls int
	ModelTime  time.Duration
	AuxCalls   int
	AuxTime    time.Duration
}

// AddCall records one denoiser call that spent d inside ONNX Runtime. On a nil *Stats it does
// nothing, so pipelines call it whether or not their caller counts.
func (s *Stats) AddCall(d time.Duration) {
	if s != nil {
		s.ModelCalls++
		s.ModelTime += d
	}
}

// AddAux records one call of a pipeline's other models that spent d inside ONNX Runtime; on a
// nil *Stats it does nothing.
func (s *Stats) AddAux(d time.Duration) {
	if s != nil {
		s.AuxCalls++
		s.AuxTime += d
	}
}

// CondKind is how a model is conditioned.
type CondKind string

// Conditioning kinds.
const (
	Unconditioned CondKind = "none"
	ClassCond     CondKind = "class"
	VectorCond    CondKind = "text"
)

// CondOptions carry conditioning choices made outside the prompt.
type CondOptions struct {
	// Class, when set, overrides the class read from the prompt (class-conditional models).
	Class *int64
	// Negative is the negative prompt of text-conditioned models that take one (Stable
	// Diffusion): it replaces the empty prompt on the unconditional side of guidance.
	Negative string
}

// Cond is the conditioning of one prompt, shared by every particle generated for it.
type Cond struct {
	// Class and Null are the class id and the null ("unconditional") id of class-conditional models.
	Class, Null int64
	// Vector and NullVector are one row of conditioning for the prompt and for no prompt, for
	// vector-conditioned models (a text embedding; the glyph prior).
	Vector, NullVector []float32
	// Tokens, when positive, says Vector and NullVector are sequences of Tokens rows each
	// (Stable Diffusion's 77 token states); 0 means one row.
	Tokens int
	// Pooled and NullPooled are the pooled text embeddings of the prompt and of the negative
	// prompt, for models that take one beside the token sequence (SDXL's text_embeds).
	Pooled, NullPooled []float32
	// Kind says which of the fields above are in use.
	Kind CondKind
}

// Guidable reports whether classifier-free guidance changes anything: the conditional and the
// unconditional inputs differ.
func (c Cond) Guidable() bool {
	switch c.Kind {
	case ClassCond:
		return c.Class != c.Null
	case VectorCond:
		return !slices.Equal(c.Vector, c.NullVector) || !slices.Equal(c.Pooled, c.NullPooled)
	}
	return false
}

// Previewer is implemented by pipelines that have a cheaper decoder than Decode (a TAESD-style
// preview decoder) for the intermediate rewards of steering. Preview has Decode's contract and
// writes images of the same size; the final images are still decoded with Decode.
type Previewer interface {
	Preview(ctx context.Context, st *Stats, x []float32, n int, dst pixels.Images) error
}

// ImageEncoder is implemented by pipelines that can map images into their state space
// (Stable Diffusion's VAE encoder), which image-to-image sampling starts from.
type ImageEncoder interface {
	// Encode writes the clean states of imgs (values in [0, 1], of Info's image size) to dst,
	// imgs.N*Info().Len() values, and counts its model call in st (see [Pipeline]).
	Encode(ctx context.Context, st *Stats, imgs pixels.Images, dst []float32) error
}

// Prediction is what a denoiser's output means.
type Prediction string

// Prediction types. Each is converted to (x0, eps) by [ToX0Eps].
const (
	PredictEpsilon Prediction = "epsilon"
	PredictV       Prediction = "v"
	PredictX0      Prediction = "x0"
	PredictFlow    Prediction = "flow"
)

// ParsePrediction accepts the names above, diffusers' aliases (v_prediction, sample) and the
// short forms eps, velocity and flow_velocity, by [enum.Parse]'s rule (case-insensitive,
// surrounding space ignored).
func ParsePrediction(s string) (Prediction, error) {
	return enum.ParseAliases("prediction", s, predictionAliases, PredictEpsilon, PredictV, PredictX0, PredictFlow)
}

var predictionAliases = map[string]Prediction{
	"eps": PredictEpsilon, "v_prediction": PredictV, "sample": PredictX0,
	"velocity": PredictFlow, "flow_velocity": PredictFlow,
}

// ToX0Eps converts a model output at level l into the predicted clean state and noise, for
// states x = Alpha*x0 + Sigma*eps. out may alias x0 or eps (each element is read before either
// is written). The conventions:
//
//	epsilon: eps = out, x0 = (x - Sigma*eps)/Alpha
//	x0:      x0 = out,  eps = (x - Alpha*x0)/Sigma
//	v:       out = Alpha*eps - Sigma*x0 (diffusers' v); x0 = (Alpha x - Sigma v)/(Alpha²+Sigma²),
//	         eps = (Sigma x + Alpha v)/(Alpha²+Sigma²), which for VP (Alpha²+Sigma² = 1) is
//	         DESIGN.md's x0 = sqrt(abar) x - sqrt(1-abar) v
//	flow:    out = eps - x0 (rectified-flow velocity); x0 = (x - Sigma v)/(Alpha+Sigma),
//	         eps = (x + Alpha v)/(Alpha+Sigma), i.e. x0 = x - t v and eps = x + (1-t) v
//
// Where a quantity is undefined (eps at Sigma = 0, x0 at Alpha = 0 for an epsilon model) it is
// set to 0; samplers never use it there.
func ToX0Eps(p Prediction, l schedule.Level, x, out, x0, eps []float32) {
	a, s := l.Alpha, l.Sigma
	switch p {
	case PredictEpsilon:
		inv := safeInv(a)
		for i, xi := range x {
			e := float64(out[i])
			x0[i] = float32((float64(xi) - s*e) * inv)
			eps[i] = float32(e)
		}
	case PredictX0:
		inv := safeInv(s)
		for i, xi := range x {
			d := float64(out[i])
			x0[i] = float32(d)
			eps[i] = float32((float64(xi) - a*d) * inv)
		}
	case PredictV:
		inv := safeInv(a*a + s*s)
		for i, xi := range x {
			v := float64(out[i])
			x0[i] = float32((a*float64(xi) - s*v) * inv)
			eps[i] = float32((s*float64(xi) + a*v) * inv)
		}
	case PredictFlow:
		inv := safeInv(a + s)
		for i, xi := range x {
			v := float64(out[i])
			x0[i] = float32((float64(xi) - s*v) * inv)
			eps[i] = float32((float64(xi) + a*v) * inv)
		}
	}
}

func safeInv(v float64) float64 {
	if v == 0 {
		return 0
	}
	return 1 / v
}

// CombineGuidance writes u + g*(c - u) into dst, where u and c are the two halves of out.
func CombineGuidance(dst, out []float32, g float64) {
	n := len(dst)
	u, c := out[:n], out[n:2*n]
	for i := range dst {
		dst[i] = float32(float64(u[i]) + g*(float64(c[i])-float64(u[i])))
	}
}

// CheckFinite returns an error naming the first non-finite value of a model's output.
func CheckFinite(model string, l schedule.Level, out []float32) error {
	for i, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("model %s returned %v at element %d for time %g: the export is broken or its inputs are out of range (check the manifest's time convention and value range, or run with --provider cpu)", model, v, i, l.Time)
		}
	}
	return nil
}
