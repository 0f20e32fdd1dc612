package sampler

import (
	"context"
	"fmt"
)

// runSVDD is soft value-based decoding (Li, Uehara et al. 2024, "Derivative-Free Guidance in
// Continuous and Discrete Diffusion Models with Soft Value-Based Decoding"). At every step each
// of the K particles draws M candidate next states from its own step distribution; the x0
// predictions of all K*M candidates come from one model call at the next level, their rewards
// are the candidates' values, and each particle keeps the best (alpha 0, an optimiser) or one
// drawn with probability proportional to exp(value/alpha). The kept candidate's prediction is
// its next step's, so a run costs about M times the base NFE. Particles never exchange states:
// each final sample is one unbroken path.
func runSVDD(ctx context.Context, e *engine) error {
	c, err := newCandidates(e, e.cfg.Search.Candidates)
	if err != nil {
		return err
	}
	if err := e.predictPop(ctx, 0); err != nil {
		return err
	}
	for i := range e.n {
		x := e.pop.X
		si := StepInfo{Step: i, Steps: e.n, From: e.levels[i], To: e.levels[i+1]}
		std := e.rule(i, e.mean, x, e.x0, e.eps, e.prevX0)
		if std <= 0 {
			// A step that draws no noise leaves nothing to choose between.
			if err := e.plainStep(ctx, i, std); err != nil {
				return err
			}
		} else {
			if e.rec != nil {
				e.rec.start(i, x)
			}
			c.draw(e, std)
			scores, err := c.evaluate(ctx, e, i)
			if err != nil {
				return fmt.Errorf("step %d/%d: %w", i+1, e.n, err)
			}
			m := c.per
			for r := range e.rows {
				j, err := c.choose(e, r/e.k, scores[r*m:(r+1)*m], e.cfg.Search.Alpha)
				if err != nil {
					return fmt.Errorf("step %d/%d: choose a candidate: %w", i+1, e.n, err)
				}
				c.adopt(e, r, r*m+j, scores[r*m+j])
			}
			if e.rec != nil {
				e.rec.step(i, e.mean, x, std)
			}
			si.Evaluated, si.Kept, si.Rewards, si.Images, si.Parents = true, true, c.chosen, c.shown, c.slots
		}
		if err := e.observe(ctx, si); err != nil {
			return err
		}
	}
	return e.scoreFinal(ctx, false)
}
