package potentials

import (
	"fmt"
	"math/rand/v2"

	"github.com/fksteer/fksteer/particles"
)

// Schedule says at which sampler steps potentials are evaluated and whether an evaluation
// resamples.
//
// Steps are 0-based sampler step indices out of n: step 0 is the first (noisiest) model call,
// step n-1 the last, as in the reference implementation. Potentials are evaluated at steps
// Start, Start+Every, Start+2*Every, ... that are <= End, and always at step n-1, which applies
// the final correction (see [Potential.Reweight]). Evaluations past n-1 do not happen.
//
// At an evaluation step the population may be resampled: always when ESSThreshold is 0, or
// adaptively, only when ESS < ESSThreshold*K. Log-weights that were not resampled away keep
// accumulating in the population's LogW into the next evaluation, which is what keeps adaptive
// resampling unbiased.
type Schedule struct {
	// Every is the number of steps between evaluations (> 0).
	Every int
	// Start is the first evaluation step (>= 0).
	Start int
	// End is the last regular evaluation step (>= Start); the final step n-1 is evaluated too.
	End int
	// ESSThreshold in [0, 1]: 0 resamples at every evaluation; otherwise a group is resampled
	// only when its effective sample size is below ESSThreshold*K (the reference uses 0.5).
	ESSThreshold float64
	// DropUnresampledWeights reproduces a known bug of the reference implementation: when an
	// adaptive evaluation does not resample, the log-weights are reset to 0 instead of carried
	// into the next evaluation. It is WRONG (the potentials of those steps are lost and the
	// result no longer targets p(x0) exp(lambda r(x0))); it exists only so tests and benchmarks
	// can show the bias. It has no effect when ESSThreshold is 0.
	DropUnresampledWeights bool
}

// Defaults returns the reference implementation's text-to-image schedule, stated for its 100
// DDIM steps: evaluate every 5 steps from step 5 to step 30 (then the final step 99), resampling
// at every evaluation (not adaptive). Callers with another step count scale Every, Start and End
// themselves. The reference's adaptive runs use ESSThreshold 0.5.
func Defaults() Schedule { return Schedule{Every: 5, Start: 5, End: 30} }

// Validate returns an error naming the first bad field: Every <= 0, Start < 0, Start > End, or
// ESSThreshold outside [0, 1] (or NaN).
func (s Schedule) Validate() error {
	switch {
	case s.Every <= 0:
		return fmt.Errorf("potentials: schedule: every = %d, want > 0", s.Every)
	case s.Start < 0:
		return fmt.Errorf("potentials: schedule: start = %d, want >= 0", s.Start)
	case s.Start > s.End:
		return fmt.Errorf("potentials: schedule: start = %d is after end = %d", s.Start, s.End)
	case !(s.ESSThreshold >= 0 && s.ESSThreshold <= 1):
		return fmt.Errorf("potentials: schedule: ESS threshold = %v, want a fraction of K in [0, 1]", s.ESSThreshold)
	}
	return nil
}

// regular returns how many regular (non-final) evaluation steps a run of n steps has: those
// Start + j*Every <= min(End, n-2).
func (s Schedule) regular(n int) int {
	hi := min(s.End, n-2)
	if s.Start > hi {
		return 0
	}
	return (hi-s.Start)/s.Every + 1
}

// Evaluates reports whether potentials are evaluated at step (0 <= step < n) of an n-step run:
// step == n-1, or Start <= step <= End with step-Start a multiple of Every. s must be valid.
func (s Schedule) Evaluates(step, n int) bool {
	_, ok := s.Evaluation(step, n)
	return ok
}

// Evaluation returns the index i of the evaluation at step, counting from 0, and whether step is
// an evaluation step at all; pass i with [Schedule.Evaluations] to [Lambda.At].
func (s Schedule) Evaluation(step, n int) (i int, ok bool) {
	switch {
	case step < 0 || step >= n:
		return 0, false
	case step == n-1:
		return s.regular(n), true
	case step >= s.Start && step <= s.End && (step-s.Start)%s.Every == 0:
		return (step - s.Start) / s.Every, true
	}
	return 0, false
}

// Evaluations returns the number of evaluation steps in an n-step run, the final one included
// (0 if n <= 0).
func (s Schedule) Evaluations(n int) int {
	if n <= 0 {
		return 0
	}
	return s.regular(n) + 1
}

// Adaptive reports whether resampling depends on the effective sample size.
func (s Schedule) Adaptive() bool { return s.ESSThreshold > 0 }

// ShouldResample reports whether a group of k particles whose log-weights have effective sample
// size ess is resampled at an evaluation step: always when ESSThreshold is 0, otherwise when
// ess < ESSThreshold*k.
func (s Schedule) ShouldResample(ess float64, k int) bool {
	return !s.Adaptive() || ess < s.ESSThreshold*float64(k)
}

// MaybeResample makes the resampling decision for one group at an evaluation step, after
// [Potential.Reweight] has added the step's log-potentials: if [Schedule.ShouldResample] says
// so, it draws ancestors with scheme from rng into parents (len K) and resamples the group
// (which resets its LogW); otherwise it leaves the log-weights to accumulate, or resets them if
// DropUnresampledWeights is set. It returns the ESS it decided on and whether it resampled.
//
// On error (all weights zero, that is every particle's reward was invalid; or a bad argument)
// the population is unchanged.
func (s Schedule) MaybeResample(pop *particles.Population, scheme particles.Scheme, rng *rand.Rand, step, group int, parents []int) (ess float64, resampled bool, err error) {
	if group < 0 || group >= pop.Groups() {
		return 0, false, fmt.Errorf("potentials: group %d out of range [0, %d)", group, pop.Groups())
	}
	logw := pop.GroupLogW(group)
	ess = particles.ESS(logw)
	if ess == 0 {
		return ess, false, fmt.Errorf("potentials: step %d group %d: %w", step, group, particles.ErrZeroWeights)
	}
	if !s.ShouldResample(ess, pop.K()) {
		if s.DropUnresampledWeights {
			clear(logw) // the reference's bug, on purpose; see the field's doc
		}
		return ess, false, nil
	}
	if err := scheme.Resample(rng, logw, parents); err != nil {
		return ess, false, fmt.Errorf("potentials: step %d group %d: %w", step, group, err)
	}
	if err := pop.Resample(step, group, parents); err != nil {
		return ess, false, err
	}
	return ess, true, nil
}

// ScaledSchedule is the default schedule for an n-step run: potentials every max(1, n/20) steps
// (rounded), from that step to 60 % of the run (never before the start), plus the final step;
// resampling at every evaluation. For 100 steps that is every 5 steps from 5 to 60; for 8 steps
// every step from 1 to 4. Fixed defaults cannot serve every step count: a start of 5 lies after
// 60 % of an 8-step run.
func ScaledSchedule(n int) Schedule {
	every := max(1, (n+10)/20)
	return Schedule{Every: every, Start: every, End: max(every, n*3/5)}
}
