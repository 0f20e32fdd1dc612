package sampler

import (
	"context"
	"fmt"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/potentials"
)

// runFK is Feynman-Kac steering (DESIGN.md section 4): K particles per group, each step read top
// to bottom as predict, score and reweight, step, maybe resample, observe. The weight of step t
// uses the x0 prediction made from x_t, and what resampling copies is the stepped state
// x_{t-1}. The final potential divides out everything applied along each ancestry, so the
// weighted population targets p(x0) exp(lambda r(x0)).
func runFK(ctx context.Context, e *engine) error {
	cfg, n := e.cfg, e.n
	pot, err := potentials.New(e.pop, cfg.Potential)
	if err != nil {
		return err
	}
	evals := cfg.Resampling.Evaluations(n)
	e.pop.ReserveEvents(e.groups * evals)
	fk := &fkState{pot: pot, parents: make([]int, e.k), parentsAll: make([]int, e.rows),
		essBuf: make([]float64, e.groups*evals), resampledBuf: make([]bool, e.groups*evals)}
	e.ess = make([]ESSPoint, 0, evals)
	e.roots = e.pop.DistinctRoots
	for i := range n {
		if err := e.predictPop(ctx, i); err != nil {
			return err
		}
		si := StepInfo{Step: i, Steps: n, From: e.levels[i], To: e.levels[i+1]}
		// The schedule's final evaluation (step n-1) happens after the loop, on the final
		// samples themselves.
		evaluate := i < n-1 && cfg.Resampling.Evaluates(i, n)
		if evaluate {
			if err := fk.reweight(ctx, e, i); err != nil {
				return fmt.Errorf("step %d/%d: %w", i+1, n, err)
			}
		}
		e.stepPop(i)
		if evaluate {
			if err := fk.resample(e, i, &si); err != nil {
				return fmt.Errorf("step %d/%d: %w", i+1, n, err)
			}
		}
		if err := e.observe(ctx, si); err != nil {
			return err
		}
	}
	if err := e.scoreFinal(ctx, false); err != nil {
		return err
	}
	lambda := fk.lambda(e, n-1)
	for g := range e.groups {
		if err := pot.Reweight(g, e.scores[g*e.k:(g+1)*e.k], lambda, true, nil); err != nil {
			return err
		}
		logw := e.pop.GroupLogW(g)
		z := particles.LogSumExp(logw)
		for k := range logw {
			e.logW[g*e.k+k] = logw[k] - z
		}
	}
	return nil
}

// fkState is what FK keeps beyond the population: the potential and the buffers of its
// resampling steps, allocated once.
type fkState struct {
	pot     *potentials.Potential
	parents []int
	// parentsAll records every row's parent slot at the current evaluation, for observers.
	parentsAll []int
	// essBuf and resampledBuf back every ESSPoint of the run.
	essBuf       []float64
	resampledBuf []bool
}

// reweight scores the x0 predictions (previews, where the pipeline has them) and multiplies
// each particle's weight by its potential.
func (fk *fkState) reweight(ctx context.Context, e *engine, step int) error {
	scores, err := e.score(ctx, e.x0, e.rows, e.k, true, nil, false)
	if err != nil {
		return err
	}
	lambda := fk.lambda(e, step)
	for g := range e.groups {
		if err := fk.pot.Reweight(g, scores[g*e.k:(g+1)*e.k], lambda, false, nil); err != nil {
			return err
		}
	}
	return nil
}

// resample resamples the groups whose schedule (and ESS) say so and records the ESS.
func (fk *fkState) resample(e *engine, step int, si *StepInfo) error {
	off := len(e.ess) * e.groups
	point := ESSPoint{Step: step, ESS: fk.essBuf[off : off+e.groups], Resampled: fk.resampledBuf[off : off+e.groups]}
	for g := range e.groups {
		ess, resampled, err := e.cfg.Resampling.MaybeResample(e.pop, e.cfg.Resampler, e.streams.Resampler(g), step, g, fk.parents)
		if err != nil {
			return fmt.Errorf("resample image %d (the reward gave no particle a finite potential; is lambda too large?): %w", g, err)
		}
		point.ESS[g], point.Resampled[g] = ess, resampled
		dst := fk.parentsAll[g*e.k : (g+1)*e.k]
		if resampled {
			e.resamplings++
			copy(dst, fk.parents)
		} else {
			for k := range dst {
				dst[k] = k
			}
		}
	}
	e.ess = append(e.ess, point)
	si.Evaluated, si.Rewards, si.ESS, si.Resampled = true, e.scores[:e.rows], point.ESS, point.Resampled
	si.Images, si.Parents = e.images(e.rows), fk.parentsAll
	return nil
}

// lambda is the potential scale at an evaluation step, following the lambda ramp over the
// schedule's evaluations.
func (fk *fkState) lambda(e *engine, step int) float64 {
	i, _ := e.cfg.Resampling.Evaluation(step, e.n)
	return e.cfg.Lambda.At(i, e.cfg.Resampling.Evaluations(e.n))
}
