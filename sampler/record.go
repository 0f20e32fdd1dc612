package sampler

import (
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/sampler/step"
	"github.com/fksteer/fksteer/schedule"
)

// Trajectories is everything a recorded run sampled, for fine-tuning trainers that need the
// denoising path and the exact log-probability of every step taken. Each (step, row) state is
// stored once: when resampling copies a particle, its children share the stored prefix, and
// Lineage says which row each final sample's step s came from.
//
// Step s goes from Levels[s] to Levels[s+1]: the levels the run walked, the end of the
// pipeline's schedule for an image-to-image run. Rows are g*K + k, as in the population.
type Trajectories struct {
	Steps, Rows, Dim int
	Levels           []schedule.Level
	// States[(s*Rows+r)*Dim:] is row r's state at the start of step s (after any resampling at
	// step s-1); s = Steps holds the final samples.
	States []float32
	// Means[(s*Rows+r)*Dim:] is the mean of the step row r took at step s, and Stds[s] its
	// standard deviation (the same for every row): x_{s+1} = mean + std*z.
	Means []float32
	Stds  []float64
	// LogProbs[s*Rows+r] is log N(x_{s+1}; mean, std^2 I) of that step averaged over the Dim
	// elements (DDPO's convention, see step.LogProb), in float32; NaN where std is 0 (a deterministic
	// step has no density: euler, DDIM with eta 0, dpm++2m, a step onto clean data by any rule
	// but flow-sde, which draws that step too).
	LogProbs []float32
	// Lineage[i*Steps+s] is the row whose step s belongs to the trajectory of final row i.
	Lineage []int
	// Seeds[g] is group g's seed; row g*K+k draws its noise from the stream of (Seeds[g], k).
	Seeds []uint64
}

// State returns row r's state at the start of step s (s = Steps: the final sample).
func (t *Trajectories) State(s, r int) []float32 {
	o := (s*t.Rows + r) * t.Dim
	return t.States[o : o+t.Dim : o+t.Dim]
}

// Mean returns the mean of the step row r took at step s.
func (t *Trajectories) Mean(s, r int) []float32 {
	o := (s*t.Rows + r) * t.Dim
	return t.Means[o : o+t.Dim : o+t.Dim]
}

// Path returns the rows whose steps make up final row i's trajectory, one per step.
func (t *Trajectories) Path(i int) []int {
	return t.Lineage[i*t.Steps : (i+1)*t.Steps : (i+1)*t.Steps]
}

// Trajectory returns final row i's states x_T .. x_0 (Steps+1 slices sharing the recording's
// storage) and, for each step, its mean, standard deviation and log-probability.
func (t *Trajectories) Trajectory(i int) (states, means [][]float32, stds []float64, logProbs []float32) {
	path := t.Path(i)
	for s, r := range path {
		states = append(states, t.State(s, r))
		means = append(means, t.Mean(s, r))
		logProbs = append(logProbs, t.LogProbs[s*t.Rows+r])
	}
	states = append(states, t.State(t.Steps, i))
	return states, means, t.Stds, logProbs
}

// recorder fills a Trajectories during a run; nil when the run does not record.
type recorder struct{ t *Trajectories }

func newRecorder(levels []schedule.Level, rows, dim int, seeds []uint64) *recorder {
	n := len(levels) - 1
	return &recorder{t: &Trajectories{
		Steps: n, Rows: rows, Dim: dim, Levels: levels, Seeds: seeds,
		States:   make([]float32, (n+1)*rows*dim),
		Means:    make([]float32, n*rows*dim),
		Stds:     make([]float64, n),
		LogProbs: make([]float32, n*rows),
	}}
}

// start records the states at the start of step s.
func (rec *recorder) start(s int, x []float32) {
	copy(rec.t.States[s*rec.t.Rows*rec.t.Dim:], x)
}

// step records step s's means, std and the log-probability of each row's new state x.
func (rec *recorder) step(s int, mean, x []float32, std float64) {
	// The loop adds float32(std)*z, so that is the step's true standard deviation. Recording it
	// (not the float64 the rule returned) also lets a trainer that reads std as float32 recompute
	// the stored log-probability exactly.
	std = float64(float32(std))
	t := rec.t
	copy(t.Means[s*t.Rows*t.Dim:], mean)
	t.Stds[s] = std
	for r := range t.Rows {
		lp := step.LogProb(x[r*t.Dim:(r+1)*t.Dim], mean[r*t.Dim:(r+1)*t.Dim], std)
		t.LogProbs[s*t.Rows+r] = float32(lp)
	}
}

// finish records the final samples and every final row's lineage.
func (rec *recorder) finish(x []float32, pop *particles.Population) *Trajectories {
	t := rec.t
	rec.start(t.Steps, x)
	t.Lineage = make([]int, t.Rows*t.Steps)
	for i := range t.Rows {
		pop.Lineage(i, t.Lineage[i*t.Steps:(i+1)*t.Steps])
	}
	return t
}
