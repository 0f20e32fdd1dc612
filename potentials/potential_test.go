package potentials_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/potentials"
)

var ninf = math.Inf(-1)

func newPop(t testing.TB, g, k int) *particles.Population {
	t.Helper()
	p, err := particles.New(g, k, 1)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseKind(t *testing.T) {
	for _, k := range potentials.Kinds() {
		if got, err := potentials.ParseKind(" " + strings.ToUpper(string(k))); err != nil || got != k {
			t.Errorf("ParseKind(%q) = %q, %v", k, got, err)
		}
	}
	_, err := potentials.ParseKind("min")
	if err == nil {
		t.Fatal("ParseKind(min): no error")
	}
	for _, k := range potentials.Kinds() {
		if !strings.Contains(err.Error(), string(k)) {
			t.Errorf("error %q does not list %q", err, k)
		}
	}
	if _, err := potentials.New(newPop(t, 1, 1), "min"); err == nil {
		t.Error("New with an unknown kind: no error")
	}
}

// TestHandComputed runs one particle through a reward sequence and compares every log G with a
// hand-computed value (exact in float64: the inputs are small binary fractions).
func TestHandComputed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kind    potentials.Kind
		rewards []float64
		lambdas []float64
		final   bool // the last evaluation is the final step
		want    []float64
	}{
		// r = 1, 3, 2 with lambda = 2.
		{"diff", potentials.Diff, []float64{1, 3, 2}, []float64{2, 2, 2}, false, []float64{2, 4, -2}},
		{"max", potentials.Max, []float64{1, 3, 2}, []float64{2, 2, 2}, false, []float64{2, 6, 6}},
		{"sum", potentials.Sum, []float64{1, 3, 2}, []float64{2, 2, 2}, false, []float64{2, 8, 12}},
		{"immediate", potentials.Immediate, []float64{1, 3, 2}, []float64{2, 2, 2}, false, []float64{2, 6, 4}},
		// The same with the last step final: lambda*r_final - (sum of earlier log G) = 4 - ...
		{"diff final", potentials.Diff, []float64{1, 3, 2}, []float64{2, 2, 2}, true, []float64{2, 4, -2}},
		{"max final", potentials.Max, []float64{1, 3, 2}, []float64{2, 2, 2}, true, []float64{2, 6, -4}},
		{"sum final", potentials.Sum, []float64{1, 3, 2}, []float64{2, 2, 2}, true, []float64{2, 8, -6}},
		{"immediate final", potentials.Immediate, []float64{1, 3, 2}, []float64{2, 2, 2}, true, []float64{2, 6, -4}},
		// Negative rewards: max starts from the first reward, not from 0.
		{"max negative", potentials.Max, []float64{-1, -3, -0.5}, []float64{1, 1, 1}, false, []float64{-1, -1, -0.5}},
		{"sum negative", potentials.Sum, []float64{-1, -3, -0.5}, []float64{1, 1, 1}, false, []float64{-1, -4, -4.5}},
		// Changing lambda: diff is lambda_t r_t - lambda_prev r_prev.
		{"diff ramp", potentials.Diff, []float64{1, 3, 2}, []float64{1, 2, 4}, false, []float64{1, 5, 2}},
		{"diff ramp final", potentials.Diff, []float64{1, 3, 2}, []float64{1, 2, 4}, true, []float64{1, 5, 2}},
		{"max ramp", potentials.Max, []float64{1, 3, 2}, []float64{1, 2, 4}, false, []float64{1, 6, 12}},
		{"max ramp final", potentials.Max, []float64{1, 3, 2}, []float64{1, 2, 4}, true, []float64{1, 6, 1}},
		// A lone final step is lambda*r for every kind.
		{"only final", potentials.Sum, []float64{3}, []float64{0.5}, true, []float64{1.5}},
	} {
		pop := newPop(t, 1, 1)
		pot, err := potentials.New(pop, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		logG := make([]float64, 1)
		var sum float64
		for i, r := range tc.rewards {
			final := tc.final && i == len(tc.rewards)-1
			if err := pot.Reweight(0, []float64{r}, tc.lambdas[i], final, logG); err != nil {
				t.Fatal(err)
			}
			sum += logG[0]
			if logG[0] != tc.want[i] {
				t.Errorf("%s: evaluation %d: log G = %v, want %v", tc.name, i, logG[0], tc.want[i])
			}
			if pop.LogW[0] != sum {
				t.Errorf("%s: evaluation %d: LogW = %v, want the accumulated %v", tc.name, i, pop.LogW[0], sum)
			}
			if got := pot.State(0).LogApplied; got != sum {
				t.Errorf("%s: evaluation %d: LogApplied = %v, want %v", tc.name, i, got, sum)
			}
		}
		last := len(tc.rewards) - 1
		if want := tc.lambdas[last] * tc.rewards[last]; tc.final && sum != want {
			t.Errorf("%s: applied log-potentials sum to %v, want lambda*r_final = %v", tc.name, sum, want)
		}
	}
}

// TestFinalCorrectionInvariant: for every kind, over random reward sequences (seeded), a random
// lambda ramp, and resampling between evaluations (multinomial, so lineages mix; adaptive for
// one group, always for the other), the log-potentials applied along each final particle's
// ancestry sum to lambda_final*r_final. The ancestry is followed with the population's genealogy,
// which checks that resampling carried the potential state along. Tolerance 1e-9 (sums of ~10
// terms of size ~10).
func TestFinalCorrectionInvariant(t *testing.T) {
	const g, k, n = 2, 8, 40
	sched := potentials.Schedule{Every: 3, Start: 2, End: 30, ESSThreshold: 0}
	adaptive := potentials.Schedule{Every: 3, Start: 2, End: 30, ESSThreshold: 0.7}
	for ki, kind := range potentials.Kinds() {
		rng := rand.New(rand.NewPCG(99, uint64(ki)))
		pop := newPop(t, g, k)
		pot, err := potentials.New(pop, kind)
		if err != nil {
			t.Fatal(err)
		}
		lam := potentials.Lambda{Value: 3, Start: 0.25, Ramp: potentials.Exponential}
		evals := sched.Evaluations(n)
		logGAt := make([][]float64, n) // step -> row -> log G (pre-resampling rows)
		rewardAt := make([][]float64, n)
		rewards := make([]float64, k)
		parents := make([]int, k)
		var lamFinal float64
		for step := range n {
			i, ok := sched.Evaluation(step, n)
			if !ok {
				continue
			}
			final := step == n-1
			lamFinal = lam.At(i, evals)
			logGAt[step] = make([]float64, g*k)
			rewardAt[step] = make([]float64, g*k)
			for grp := range g {
				for s := range rewards {
					rewards[s] = 2 * rng.NormFloat64()
				}
				copy(rewardAt[step][grp*k:], rewards)
				if err := pot.Reweight(grp, rewards, lamFinal, final, logGAt[step][grp*k:(grp+1)*k]); err != nil {
					t.Fatal(err)
				}
				if final {
					continue
				}
				s := sched
				if grp == 1 {
					s = adaptive
				}
				if _, _, err := s.MaybeResample(pop, particles.Multinomial, rng, step, grp, parents); err != nil {
					t.Fatal(err)
				}
			}
		}
		perGroup := [g]int{}
		for e := range pop.NumEvents() {
			perGroup[pop.Event(e).Group]++
		}
		// Group 0 resamples at all 10 regular evaluations; adaptive group 1 must both resample
		// and skip, or the test would not exercise accumulation across evaluations.
		if perGroup[0] != sched.Evaluations(n)-1 || perGroup[1] == 0 || perGroup[1] == perGroup[0] {
			t.Fatalf("%s: resamplings per group %v, want 10 and between 1 and 9", kind, perGroup)
		}
		lineage := make([]int, n)
		for row := range g * k {
			pop.Lineage(row, lineage)
			var sum, sinceReset float64
			lastEvent := -1
			for e := range pop.NumEvents() {
				if ev := pop.Event(e); ev.Group == row/k {
					lastEvent = ev.Step
				}
			}
			for step, lg := range logGAt {
				if lg != nil {
					sum += lg[lineage[step]]
					if step > lastEvent {
						sinceReset += lg[lineage[step]]
					}
				}
			}
			want := lamFinal * rewardAt[n-1][row]
			if math.Abs(sum-want) > 1e-9 {
				t.Errorf("%s row %d: applied log-potentials along the ancestry sum to %v, want lambda*r_final = %v", kind, row, sum, want)
			}
			if got := pot.State(row).LogApplied; math.Abs(got-want) > 1e-9 {
				t.Errorf("%s row %d: LogApplied = %v, want %v", kind, row, got, want)
			}
			// LogW holds exactly the log-potentials since the group's last resampling.
			if math.Abs(pop.LogW[row]-sinceReset) > 1e-9 {
				t.Errorf("%s row %d: LogW = %v, want the %v accumulated since step %d", kind, row, pop.LogW[row], sinceReset, lastEvent)
			}
		}
	}
}

// TestInvalidRewards: NaN and ±Inf rewards give log G = -Inf and leave the particle's state
// alone; the other particles are unaffected; a whole group of NaN makes resampling fail with
// ErrZeroWeights and leaves the population unchanged.
func TestInvalidRewards(t *testing.T) {
	for _, kind := range potentials.Kinds() {
		pop := newPop(t, 1, 4)
		pot, err := potentials.New(pop, kind)
		if err != nil {
			t.Fatal(err)
		}
		if err := pot.Reweight(0, []float64{1, 1, 1, 1}, 2, false, nil); err != nil {
			t.Fatal(err)
		}
		before := pot.State(1)
		logG := make([]float64, 4)
		for _, final := range []bool{false, true} {
			if err := pot.Reweight(0, []float64{0.5, math.NaN(), math.Inf(1), math.Inf(-1)}, 2, final, logG); err != nil {
				t.Fatal(err)
			}
			for s := 1; s < 4; s++ {
				if logG[s] != ninf || pop.LogW[s] != ninf {
					t.Errorf("%s final=%v slot %d: log G = %v, LogW = %v; want -Inf", kind, final, s, logG[s], pop.LogW[s])
				}
			}
			if math.IsNaN(logG[0]) || math.IsInf(logG[0], 0) {
				t.Errorf("%s final=%v: valid reward got log G %v", kind, final, logG[0])
			}
			if got := pot.State(1); got != before {
				t.Errorf("%s: state of a NaN particle changed: %+v -> %+v", kind, before, got)
			}
		}
		// Overflowing potentials are invalid too, never NaN.
		if err := pot.Reweight(0, []float64{1e308, 1, 1, 1}, 10, false, logG); err != nil {
			t.Fatal(err)
		}
		if logG[0] != ninf {
			t.Errorf("%s: overflowing potential gave %v, want -Inf", kind, logG[0])
		}

		all := newPop(t, 1, 3)
		pa, _ := potentials.New(all, kind)
		if err := pa.Reweight(0, []float64{math.NaN(), math.NaN(), math.NaN()}, 1, false, nil); err != nil {
			t.Fatal(err)
		}
		_, _, err = potentials.Defaults().MaybeResample(all, particles.Systematic, rand.New(rand.NewPCG(1, 1)), 5, 0, make([]int, 3))
		if err == nil || !strings.Contains(err.Error(), "step 5 group 0") {
			t.Errorf("%s: all-NaN group: error %v, want ErrZeroWeights naming step and group", kind, err)
		}
		if all.NumEvents() != 0 {
			t.Errorf("%s: all-NaN group was resampled", kind)
		}
	}
}

func TestReweightErrors(t *testing.T) {
	pop := newPop(t, 2, 3)
	pot, err := potentials.New(pop, potentials.Max)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := potentials.New(pop, potentials.Diff); err == nil {
		t.Error("second Potential on one population: no error")
	}
	ok := []float64{1, 2, 3}
	for _, tc := range []struct {
		name    string
		group   int
		rewards []float64
		lambda  float64
		logG    []float64
	}{
		{"group", 2, ok, 1, nil},
		{"negative group", -1, ok, 1, nil},
		{"rewards", 0, ok[:2], 1, nil},
		{"logG", 0, ok, 1, make([]float64, 2)},
		{"NaN lambda", 0, ok, math.NaN(), nil},
		{"Inf lambda", 0, ok, math.Inf(1), nil},
	} {
		if err := pot.Reweight(tc.group, tc.rewards, tc.lambda, false, tc.logG); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	for r := range pop.Rows() {
		if pop.LogW[r] != 0 || pot.State(r) != (potentials.RowState{MaxReward: ninf}) {
			t.Errorf("row %d changed by failed calls: LogW %v, state %+v", r, pop.LogW[r], pot.State(r))
		}
	}
}

func TestReweightNoAllocs(t *testing.T) {
	pop := newPop(t, 4, 16)
	pot, err := potentials.New(pop, potentials.Diff)
	if err != nil {
		t.Fatal(err)
	}
	rewards := make([]float64, 16)
	logG := make([]float64, 16)
	if a := testing.AllocsPerRun(100, func() {
		if err := pot.Reweight(2, rewards, 1, false, logG); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("%v allocations per Reweight, want 0", a)
	}
}

func BenchmarkReweight(b *testing.B) {
	pop := newPop(b, 1, 16)
	pot, err := potentials.New(pop, potentials.Max)
	if err != nil {
		b.Fatal(err)
	}
	rewards := make([]float64, 16)
	for i := range rewards {
		rewards[i] = float64(i) / 16
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := pot.Reweight(0, rewards, 2, false, nil); err != nil {
			b.Fatal(err)
		}
	}
}
