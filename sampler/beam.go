package sampler

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
)

// runBeam is beam search over denoising paths (Ma et al. 2025, "Inference-Time Scaling for
// Diffusion Models beyond Scaling Denoising Steps"): B = K beams per image take their steps
// as base sampling does, and at every branch step (Search.Every, 2*Every, ...) each beam draws
// C children from its step distribution instead; the x0 predictions of all B*C children come
// from one model call, and the B children with the highest rewards go on (no weights: an
// optimiser). A kept child's prediction is its next step's. Keeping a child is recorded as its
// beam copying the parent's state just before the step, so exported trajectories and contact
// sheets follow the kept paths.
func runBeam(ctx context.Context, e *engine) error {
	c, err := newCandidates(e, e.cfg.Search.Candidates)
	if err != nil {
		return err
	}
	e.roots = e.pop.DistinctRoots
	e.pop.ReserveEvents(e.groups * (e.n - 1) / e.cfg.Search.Every) // a branching per group and branch step
	b, per, d := e.k, c.per, e.dim
	order := make([]int, b*per)
	kept := make([]int, e.rows)    // per row, the candidate it adopts
	parents := make([]int, e.rows) // per row, the slot its parent held
	var mean []float32             // the kept steps' means, for the recording
	if e.rec != nil {
		mean = make([]float32, e.rows*d)
	}
	if err := e.predictPop(ctx, 0); err != nil {
		return err
	}
	for i := range e.n {
		x := e.pop.X
		si := StepInfo{Step: i, Steps: e.n, From: e.levels[i], To: e.levels[i+1]}
		std := e.rule(i, e.mean, x, e.x0, e.eps, e.prevX0)
		if std <= 0 || !e.cfg.beamBranches(i) {
			if err := e.plainStep(ctx, i, std); err != nil {
				return err
			}
		} else {
			c.draw(e, std)
			scores, err := c.evaluate(ctx, e, i)
			if err != nil {
				return fmt.Errorf("step %d/%d: %w", i+1, e.n, err)
			}
			for g := range e.groups {
				top(scores[g*b*per:(g+1)*b*per], order)
				for k, j := range order[:b] {
					kept[g*b+k], parents[g*b+k] = g*b*per+j, j/per
				}
				// The kept children's parents' states x_t become the beams', recorded as a
				// resampling after the previous step; then each beam takes its child's step.
				if err := e.pop.Resample(i-1, g, parents[g*b:(g+1)*b]); err != nil {
					return err
				}
				e.resamplings++
			}
			if e.rec != nil {
				e.rec.start(i, x)
			}
			for r, j := range kept {
				c.adopt(e, r, j, scores[j])
			}
			if e.rec != nil {
				// The kept steps' means are their parents'.
				for r := range kept {
					parent := r - r%b + parents[r]
					copy(mean[r*d:(r+1)*d], e.mean[parent*d:(parent+1)*d])
				}
				e.rec.step(i, mean, x, std)
			}
			si.Evaluated, si.Kept, si.Rewards, si.Images, si.Parents = true, true, c.chosen, c.shown, parents
		}
		if err := e.observe(ctx, si); err != nil {
			return err
		}
	}
	return e.scoreFinal(ctx, false)
}

// top sorts order to the indices of scores from the highest score down, the lower index first
// on ties and NaN last, so the first B are the kept children.
func top(scores []float64, order []int) {
	for j := range order {
		order[j] = j
	}
	slices.SortStableFunc(order, func(a, b int) int {
		sa, sb := scores[a], scores[b]
		switch {
		case math.IsNaN(sa) || math.IsNaN(sb):
			return cmp.Compare(nan(sa), nan(sb))
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
}

// nan is 1 for NaN and 0 otherwise, so that sorting by it puts NaN last.
func nan(x float64) int {
	if math.IsNaN(x) {
		return 1
	}
	return 0
}
