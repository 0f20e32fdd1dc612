package glyphs

import (
	"fmt"
	"math"
)

// MinT is the smallest time the denoiser works at: a smaller t, 0 included, is raised to MinT so
// that nothing divides by zero. At t = 1e-4 the noise has standard deviation 1e-4 while any two
// images differ by at least 2/255 in some pixel, so the posterior is already the single nearest
// image and the clamp changes nothing a sampler can see.
const MinT = 1e-4

// PosteriorWeights returns the posterior probabilities of the M images given x_t = x at time t,
// computed directly in float64: w_m ∝ exp(logPrior_m - ||x - (1-t) x_m||^2 / (2 t^2)), the
// mixture prior's weights times the Gaussian likelihood N(x; (1-t) x_m, t^2 I). t is clamped
// below at MinT as the ONNX denoiser does. A nil logPrior is uniform.
//
// It panics if x does not hold ImageLen values or logPrior has neither 0 nor M entries.
// Exactness tests use it for the target distribution; PosteriorMean is its expectation.
func PosteriorWeights(d *Dataset, x []float32, t float64, logPrior []float32) []float64 {
	if len(x) != ImageLen {
		panic(fmt.Sprintf("glyphs.PosteriorWeights: x holds %d values, want %d", len(x), ImageLen))
	}
	if logPrior != nil && len(logPrior) != d.Len() {
		panic(fmt.Sprintf("glyphs.PosteriorWeights: logPrior holds %d values, want %d", len(logPrior), d.Len()))
	}
	t = max(t, MinT)
	a := 1 - t
	w := make([]float64, d.Len())
	top := math.Inf(-1)
	for m := range w {
		// The distance form, not the expanded one the graph uses: float64 makes either exact
		// enough, and this one has no cancellation.
		var dist float64
		for k, v := range d.Image(m) {
			diff := float64(x[k]) - a*float64(v)
			dist += diff * diff
		}
		w[m] = -dist / (2 * t * t)
		if logPrior != nil {
			w[m] += float64(logPrior[m])
		}
		top = max(top, w[m])
	}
	var sum float64
	for m, l := range w {
		w[m] = math.Exp(l - top)
		sum += w[m]
	}
	for m := range w {
		w[m] /= sum
	}
	return w
}

// PosteriorMean returns E[x0 | x_t = x] under the prior logPrior, the exact denoiser output:
// the images averaged with PosteriorWeights, in float64, rounded to float32. It panics as
// PosteriorWeights does.
func PosteriorMean(d *Dataset, x []float32, t float64, logPrior []float32) []float32 {
	w := PosteriorWeights(d, x, t, logPrior)
	acc := make([]float64, ImageLen)
	for m, wm := range w {
		if wm == 0 {
			continue
		}
		for k, v := range d.Image(m) {
			acc[k] += wm * float64(v)
		}
	}
	out := make([]float32, ImageLen)
	for k, v := range acc {
		out[k] = float32(v)
	}
	return out
}
