package potentials

import (
	"fmt"
	"math"

	"github.com/fksteer/fksteer/internal/enum"
	"github.com/fksteer/fksteer/particles"
)

// Names of the per-row fields a [Potential] registers on its population (width 1, float64).
// Exporters can read them with [particles.Population.Float64].
const (
	// FieldPrevReward is the reward at the particle's previous evaluation (0 before any).
	FieldPrevReward = "potentials.prev_reward"
	// FieldPrevLambda is the lambda of the particle's previous evaluation (0 before any).
	FieldPrevLambda = "potentials.prev_lambda"
	// FieldMaxReward is the running maximum of the particle's rewards (-Inf before any).
	FieldMaxReward = "potentials.max_reward"
	// FieldSumReward is the running sum of the particle's rewards (0 before any).
	FieldSumReward = "potentials.sum_reward"
	// FieldLogApplied is the sum of the log-potentials applied along the particle's ancestry.
	FieldLogApplied = "potentials.log_applied"
)

// Potential computes one kind of FK potential for every particle of a population and keeps each
// particle's reward history in the population, so that [particles.Population.Resample] copies it
// with the particle (a child continues its parent's history). It holds no other state: two
// particles with equal fields get equal potentials.
//
// A Potential is not safe for concurrent use on the same group; different groups may be
// reweighted concurrently.
type Potential struct {
	kind Kind
	pop  *particles.Population

	prevReward, prevLambda, maxReward, sumReward, logApplied []float64
}

// RowState is one particle's potential state, as stored in the population's fields.
type RowState struct {
	PrevReward, PrevLambda, MaxReward, SumReward, LogApplied float64
}

// New registers the potential fields (the Field* names) on pop and returns a Potential of the
// given kind over it. It returns an error, and leaves pop unchanged, if kind is unknown or pop
// already has those fields (one Potential per population).
func New(pop *particles.Population, kind Kind) (*Potential, error) {
	if err := enum.Check("potential", kind, Kinds()...); err != nil {
		return nil, err
	}
	for _, name := range []string{FieldPrevReward, FieldPrevLambda, FieldMaxReward, FieldSumReward, FieldLogApplied} {
		if pop.Float64(name) != nil || pop.Float32(name) != nil {
			return nil, fmt.Errorf("potentials: population already has field %q (one Potential per population)", name)
		}
	}
	p := &Potential{
		kind:       kind,
		pop:        pop,
		prevReward: pop.AddFloat64(FieldPrevReward, 1),
		prevLambda: pop.AddFloat64(FieldPrevLambda, 1),
		maxReward:  pop.AddFloat64(FieldMaxReward, 1),
		sumReward:  pop.AddFloat64(FieldSumReward, 1),
		logApplied: pop.AddFloat64(FieldLogApplied, 1),
	}
	for i := range p.maxReward {
		p.maxReward[i] = math.Inf(-1) // max with nothing is the first reward
	}
	return p, nil
}

// Kind returns the potential's kind.
func (p *Potential) Kind() Kind { return p.kind }

// State returns row's potential state.
func (p *Potential) State(row int) RowState {
	return RowState{p.prevReward[row], p.prevLambda[row], p.maxReward[row], p.sumReward[row], p.logApplied[row]}
}

// Reweight applies one evaluation step's potentials to group: for each slot k with reward
// rewards[k] (the reward of the x0 predicted from the particle's current state) and this
// evaluation's lambda, it computes log G (formulas in the package documentation; final selects
// the final correction lambda r - LogApplied), adds it to the particle's LogW, updates its reward
// history and LogApplied, and writes it to logG[k] if logG is not nil.
//
// An invalid reward (NaN or ±Inf), or a potential that overflows float64, gives log G = -Inf:
// the particle's weight becomes zero and its history is left as it was, so LogApplied only ever
// sums finite values and the final correction stays finite. Reweight never produces a NaN log G.
// If every particle of a group gets -Inf, resampling reports [particles.ErrZeroWeights].
//
// Why the final correction is exact: LogApplied is the sum of the log-potentials applied along
// the particle's ancestry (resampling copies it to children), so after the final step that sum is
// lambda_final r_final for every particle and every kind. For diff the intermediate potentials
// telescope, LogApplied = lambda_prev r_prev, and the correction is the ordinary diff formula:
//
//	lambda_final r_final - LogApplied = lambda_final r_final - lambda_prev r_prev.
//
// It returns an error, and changes nothing, if group is out of range, len(rewards) != K, logG is
// neither nil nor of length K, or lambda is not finite. It does not allocate.
func (p *Potential) Reweight(group int, rewards []float64, lambda float64, final bool, logG []float64) error {
	k := p.pop.K()
	switch {
	case group < 0 || group >= p.pop.Groups():
		return fmt.Errorf("potentials: group %d out of range [0, %d)", group, p.pop.Groups())
	case len(rewards) != k:
		return fmt.Errorf("potentials: %d rewards for %d particles", len(rewards), k)
	case logG != nil && len(logG) != k:
		return fmt.Errorf("potentials: log-potential buffer of length %d for %d particles", len(logG), k)
	case math.IsNaN(lambda) || math.IsInf(lambda, 0):
		return fmt.Errorf("potentials: lambda %v is not finite", lambda)
	}
	logw := p.pop.GroupLogW(group)
	for slot, r := range rewards {
		row := group*k + slot
		lg := p.logPotential(row, r, lambda, final)
		if finite(lg) {
			p.prevReward[row] = r
			p.prevLambda[row] = lambda
			p.maxReward[row] = max(p.maxReward[row], r)
			p.sumReward[row] += r
			p.logApplied[row] += lg
		} else {
			lg = math.Inf(-1)
		}
		logw[slot] += lg
		if logG != nil {
			logG[slot] = lg
		}
	}
	return nil
}

// logPotential is log G for one row; a non-finite result means "weight zero".
func (p *Potential) logPotential(row int, r, lambda float64, final bool) float64 {
	if !finite(r) {
		return math.Inf(-1)
	}
	if final {
		return lambda*r - p.logApplied[row]
	}
	switch p.kind {
	case Diff:
		return lambda*r - p.prevLambda[row]*p.prevReward[row]
	case Max:
		return lambda * max(r, p.maxReward[row])
	case Sum:
		return lambda * (r + p.sumReward[row])
	default: // Immediate
		return lambda * r
	}
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
