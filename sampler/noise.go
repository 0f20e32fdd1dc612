package sampler

import (
	"context"
	"fmt"
	"math"
)

// runNoise is search in noise space (Ma et al. 2025), for deterministic samplers and distilled
// few-step models, where a sample is a function of its initial noise x_T alone and SMC has
// nothing to resample. Random search (Method Random) solves N initial noises and keeps the
// best. Zero-order search (Method Noise) starts the same way, then each further round solves N
// neighbours of the pivot, x_T + s*eps rescaled to the shell |x| = sqrt(dim) where Gaussian
// noise lives, and moves the pivot to the best neighbour if it beats the pivot. Every round's
// N solves of every image step together, one model call per step. The K = Particles best
// samples found are returned. A run records its trajectories by solving the K kept noises once
// more (K*steps NFE beyond the budget, only when recording).
func runNoise(ctx context.Context, e *engine) error {
	s := e.cfg.Search
	n, d, nb := e.n, e.dim, s.Neighbours
	rows := e.groups * nb
	fill, err := e.extraStreams(nb * s.Rounds)
	if err != nil {
		return err
	}
	w := &noiseWork{
		x: make([]float32, rows*d), start: make([]float32, rows*d),
		x0: make([]float32, rows*d), eps: make([]float32, rows*d), mean: make([]float32, rows*d),
		pivot: make([]float32, e.groups*d), pivotScore: make([]float64, e.groups),
		keptNoise: make([]float32, e.rows*d), keptFinal: make([]float32, e.rows*d),
		keptScore: make([]float64, e.rows), keptCount: make([]int, e.groups),
	}
	if e.prevX0 != nil {
		w.prev = make([]float32, rows*d)
	}
	e.reserve(rows)
	for round := range s.Rounds {
		for g := range e.groups {
			for j := range nb {
				x := w.start[(g*nb+j)*d : (g*nb+j+1)*d]
				fill(g*nb*s.Rounds+round*nb+j, x)
				if round > 0 {
					neighbour(x, w.pivot[g*d:(g+1)*d], s.Scale)
				}
			}
		}
		copy(w.x, w.start)
		if err := w.solve(ctx, e, round, rows); err != nil {
			return err
		}
		scores, err := e.score(ctx, w.x, rows, nb, false, nil, false)
		if err != nil {
			return fmt.Errorf("round %d/%d: %w", round+1, s.Rounds, err)
		}
		for g := range e.groups {
			for j := range nb {
				r := g*nb + j
				w.keep(e, g, scores[r], w.start[r*d:(r+1)*d], w.x[r*d:(r+1)*d])
				if sc := scores[r]; round == 0 && j == 0 || sc > w.pivotScore[g] || math.IsNaN(w.pivotScore[g]) {
					w.pivotScore[g] = sc
					copy(w.pivot[g*d:(g+1)*d], w.start[r*d:(r+1)*d])
				}
			}
		}
	}
	for g, c := range w.keptCount {
		if c < e.k {
			return fmt.Errorf("image %d: %s search found %d samples with a finite reward, fewer than the %d to return", g, e.cfg.Method, c, e.k)
		}
	}
	if e.rec == nil {
		copy(e.pop.X, w.keptFinal)
	} else {
		// Solve the kept noises once more, recording: the same deterministic steps give the
		// same samples.
		copy(e.pop.X, w.keptNoise)
		for i := range n {
			if err := e.predictPop(ctx, i); err != nil {
				return err
			}
			e.stepPop(i)
		}
	}
	return e.scoreFinal(ctx, false)
}

// noiseWork is a noise search's state: the round's states, the pivots and the best samples
// found so far, K per image sorted by reward.
type noiseWork struct {
	x, start, x0, eps, mean, prev []float32
	pivot                         []float32
	pivotScore                    []float64
	keptNoise, keptFinal          []float32
	keptScore                     []float64
	keptCount                     []int
}

// solve runs the deterministic sampler over rows states w.x in place, one model call per step
// for all of them, observed as steps round*n+i of rounds*n.
func (w *noiseWork) solve(ctx context.Context, e *engine, round, rows int) error {
	n := e.n
	for i := range n {
		if err := e.predict(ctx, w.x, rows, e.levels[i], w.x0, w.eps); err != nil {
			return fmt.Errorf("round %d, step %d/%d: %w", round+1, i+1, n, err)
		}
		var prev []float32
		if w.prev != nil {
			prev = w.prev[:rows*e.dim]
		}
		e.rule(i, w.mean, w.x, w.x0, w.eps, prev)
		copy(w.x, w.mean)
		if w.prev != nil {
			copy(w.prev, w.x0)
		}
		si := StepInfo{Step: round*n + i, Steps: e.cfg.Search.Rounds * n, From: e.levels[i], To: e.levels[i+1]}
		if err := e.observe(ctx, si); err != nil {
			return err
		}
	}
	return nil
}

// keep inserts a sample into image g's K best, if it is one of them; NaN rewards are never
// kept.
func (w *noiseWork) keep(e *engine, g int, score float64, noise, final []float32) {
	if math.IsNaN(score) {
		return
	}
	k, d := e.k, e.dim
	c := w.keptCount[g]
	pos := c
	for pos > 0 && score > w.keptScore[g*k+pos-1] {
		pos--
	}
	if pos >= k {
		return
	}
	last := min(c, k-1)
	for i := last; i > pos; i-- {
		r := g*k + i
		w.keptScore[r] = w.keptScore[r-1]
		copy(w.keptNoise[r*d:(r+1)*d], w.keptNoise[(r-1)*d:r*d])
		copy(w.keptFinal[r*d:(r+1)*d], w.keptFinal[(r-1)*d:r*d])
	}
	r := g*k + pos
	w.keptScore[r] = score
	copy(w.keptNoise[r*d:(r+1)*d], noise)
	copy(w.keptFinal[r*d:(r+1)*d], final)
	w.keptCount[g] = min(c+1, k)
}

// neighbour turns the standard normal draw x into a neighbour of pivot: pivot + scale*x,
// rescaled to norm sqrt(len(x)), the shell where Gaussian noise of that dimension lives.
func neighbour(x, pivot []float32, scale float64) {
	var ss float64
	for i, z := range x {
		v := float64(pivot[i]) + scale*float64(z)
		x[i] = float32(v)
		ss += v * v
	}
	f := math.Sqrt(float64(len(x)) / ss)
	for i := range x {
		x[i] = float32(float64(x[i]) * f)
	}
}
