package sampler

import "context"

// runBase draws K independent samples per group: every step predicts all rows in one call and
// steps them. Best-of-N is this run with the best final reward selected.
func runBase(ctx context.Context, e *engine) error {
	for i := range e.n {
		if err := e.predictPop(ctx, i); err != nil {
			return err
		}
		e.stepPop(i)
		if e.cfg.SharedPrefix > 0 && i == e.cfg.SharedPrefix-1 {
			if err := e.sharePrefix(i); err != nil {
				return err
			}
		}
		if err := e.observe(ctx, StepInfo{Step: i, Steps: e.n, From: e.levels[i], To: e.levels[i+1]}); err != nil {
			return err
		}
	}
	// A base run's final rewards are only reported, so a group of NaN scores is data (a
	// dataset records it as null), not a reason to lose the run.
	return e.scoreFinal(ctx, e.cfg.Method == Base)
}

// sharePrefix makes every slot of every group continue from slot 0's state after step, recorded
// in the genealogy as a resampling from slot 0.
func (e *engine) sharePrefix(step int) error {
	zeros := make([]int, e.k)
	e.pop.ReserveEvents(e.groups)
	for g := range e.groups {
		if err := e.pop.Resample(step, g, zeros); err != nil {
			return err
		}
	}
	return nil
}
