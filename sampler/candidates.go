package sampler

import (
	"context"
	"math"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pixels"
)

// candidates is what svdd and beam share: per candidate next states for every population row,
// drawn from the row's own step distribution, their x0 predictions (one model call for all of
// them, reused as the chosen candidate's next prediction) and their rewards; then each chosen
// candidate is adopted into a population row.
type candidates struct {
	per        int
	x, x0, eps []float32
	fill       func(row int, dst []float32)
	// shown and chosen hold the adopted candidates' images and rewards, row by population row,
	// for observers; slots lists 0..K-1 per group, the parents of a step that moved no row.
	shown  pixels.Images
	chosen []float64
	slots  []int
	logw   []float64
	pick   []int
}

// newCandidates allocates per candidates for every population row.
func newCandidates(e *engine, per int) (*candidates, error) {
	fill, err := e.extraStreams(e.k * per)
	if err != nil {
		return nil, err
	}
	n := e.rows * per * e.dim
	c := &candidates{per: per, fill: fill,
		x: make([]float32, n), x0: make([]float32, n), eps: make([]float32, n),
		shown:  pixels.NewImages(e.rows, e.imgs.C, e.imgs.H, e.imgs.W),
		chosen: make([]float64, e.rows), slots: make([]int, e.rows),
		logw: make([]float64, per), pick: make([]int, 1)}
	for r := range c.slots {
		c.slots[r] = r % e.k
	}
	e.reserve(e.rows * per)
	return c, nil
}

// draw sets candidate j = r*per + m of population row r to mean_r + std*z, z from candidate j's
// own stream.
func (c *candidates) draw(e *engine, std float64) {
	for r := range e.rows {
		m := e.mean[r*e.dim : (r+1)*e.dim]
		for j := r * c.per; j < (r+1)*c.per; j++ {
			copy(c.x[j*e.dim:(j+1)*e.dim], m)
		}
	}
	// move adds std*z to a state already holding the mean, candidate by candidate.
	e.move(c.x, c.x, std, e.rows*c.per, c.fill)
}

// evaluate predicts the candidates' x0 at the level step i leads to, in one model call, and
// scores those predictions (previews where the pipeline has them). After the last step the
// candidates are clean samples, scored as they are.
func (c *candidates) evaluate(ctx context.Context, e *engine, i int) ([]float64, error) {
	n := e.rows * c.per
	if i == e.n-1 {
		return e.score(ctx, c.x, n, c.per, false, nil, false)
	}
	if err := e.predict(ctx, c.x, n, e.levels[i+1], c.x0, c.eps); err != nil {
		return nil, err
	}
	return e.score(ctx, c.x0, n, c.per, true, nil, false)
}

// adopt makes candidate j population row r's state, with its predictions, image and reward.
func (c *candidates) adopt(e *engine, r, j int, score float64) {
	d := e.dim
	copy(e.pop.X[r*d:(r+1)*d], c.x[j*d:(j+1)*d])
	copy(e.x0[r*d:(r+1)*d], c.x0[j*d:(j+1)*d])
	copy(e.eps[r*d:(r+1)*d], c.eps[j*d:(j+1)*d])
	copy(c.shown.At(r), e.imgs.At(j))
	c.chosen[r] = score
}

// choose returns the index of the candidate to keep among scores: the best (alpha 0; NaN
// scores lose), or one drawn with probability proportional to exp(score/alpha) from rng's
// group stream.
func (c *candidates) choose(e *engine, g int, scores []float64, alpha float64) (int, error) {
	if alpha == 0 {
		return best(scores), nil
	}
	for m, s := range scores {
		c.logw[m] = s / alpha
		if math.IsNaN(s) {
			c.logw[m] = math.Inf(-1)
		}
	}
	if err := particles.Multinomial.Resample(e.streams.Resampler(g), c.logw, c.pick); err != nil {
		return 0, err
	}
	return c.pick[0], nil
}

// best returns the index of the highest score, the first on ties; NaN never wins unless all
// are NaN.
func best(scores []float64) int {
	b := 0
	for m, s := range scores {
		if s > scores[b] || math.IsNaN(scores[b]) && !math.IsNaN(s) {
			b = m
		}
	}
	return b
}
