package sampler_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/sampler/step"
	"github.com/fksteer/fksteer/schedule"
)

// TestRecordedLogProbsFollowEachLineage records an FK run (so particles are copied) and checks,
// along every final sample's own path, that the stored log-probability of each step equals the
// Gaussian log-density recomputed from the stored state x_{s+1}, mean and std, and that the
// path ends in the final sample.
func TestRecordedLogProbsFollowEachLineage(t *testing.T) {
	p := openGlyphs(t)
	r, err := rewards.Parse("color:target=#c02020", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := sampler.Run(context.Background(), p, sampler.Config{
		Prompt: `"A"`, Steps: 12, Rule: schedule.DDIMRule, Eta: 1, Images: 2, Particles: 6, Seed: 5,
		Method: sampler.FK, Reward: r, Potential: potentials.Diff, Lambda: potentials.Lambda{Value: 20},
		Resampling: potentials.Schedule{Every: 2, Start: 2, End: 8}, Resampler: particles.Systematic,
		Select: sampler.SelectAll, Record: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Trajectories
	if tr == nil || tr.Steps != 12 || tr.Rows != 12 || len(tr.Levels) != 13 {
		t.Fatalf("trajectories %+v", tr)
	}
	copied := 0
	for i := range tr.Rows {
		states, means, stds, lps := tr.Trajectory(i)
		path := tr.Path(i)
		for s := range tr.Steps {
			if stds[s] == 0 {
				// The last flow step lands on clean data deterministically: no density.
				if s != tr.Steps-1 || !math.IsNaN(float64(lps[s])) {
					t.Fatalf("row %d step %d: std 0 with log-prob %g", i, s, lps[s])
				}
				continue
			}
			want := step.LogProb(states[s+1], means[s], stds[s])
			if float32(want) != lps[s] || math.IsNaN(want) {
				t.Fatalf("row %d step %d: stored log-prob %g, recomputed %g", i, s, lps[s], want)
			}
			if path[s] != i {
				copied++
			}
		}
		if !slices.Equal(states[tr.Steps], tr.State(tr.Steps, i)) {
			t.Fatalf("row %d: path does not end in its final sample", i)
		}
	}
	if copied == 0 {
		t.Error("no path crossed a resampling; the test would not catch a lineage bug")
	}
}

func TestSharedStartAndPrefix(t *testing.T) {
	p := openGlyphs(t)
	base := sampler.Config{Prompt: `"B"`, Steps: 10, Rule: schedule.DDIMRule, Eta: 1, Images: 2, Particles: 4, Seed: 9, Record: true}

	cfg := base
	cfg.SharedStart = true
	res, err := sampler.Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Trajectories
	for g := range 2 {
		for k := 1; k < 4; k++ {
			if !slices.Equal(tr.State(0, g*4+k), tr.State(0, g*4)) {
				t.Fatalf("group %d slot %d does not share x_T", g, k)
			}
			if slices.Equal(tr.State(1, g*4+k), tr.State(1, g*4)) {
				t.Fatalf("group %d slot %d took the same first step as slot 0", g, k)
			}
		}
	}

	cfg = base
	cfg.SharedPrefix = 4
	res, err = sampler.Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr = res.Trajectories
	for i := range tr.Rows {
		path := tr.Path(i)
		g := i / 4
		for s := range tr.Steps {
			want := i
			if s < 4 {
				want = g * 4
			}
			if path[s] != want {
				t.Fatalf("row %d step %d comes from row %d, want %d", i, s, path[s], want)
			}
		}
	}
}

// TestRecordingNewRules: an lcm step is a real Gaussian, N(Alpha'*x0, Sigma'^2 I), so each
// recorded std is the next level's Sigma (0 onto clean data, at the Euler grid's end) and each
// log-probability the density of the stored state; dpm++2m draws nothing, so its stds are 0
// and its log-probabilities NaN.
func TestRecordingNewRules(t *testing.T) {
	g := newGauss(16, 0.5, true)
	res, err := sampler.Run(context.Background(), g, sampler.Config{Steps: 6, Rule: schedule.LCMRule, Images: 1, Particles: 3, Seed: 2, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Trajectories
	for s := range tr.Steps {
		if want := float64(float32(tr.Levels[s+1].Sigma)); tr.Stds[s] != want {
			t.Errorf("lcm step %d: std %v, want Sigma' = %v", s, tr.Stds[s], want)
		}
		for r := range tr.Rows {
			lp := tr.LogProbs[s*tr.Rows+r]
			if tr.Stds[s] == 0 {
				if !math.IsNaN(float64(lp)) {
					t.Errorf("lcm step %d onto clean data: log-prob %v, want NaN", s, lp)
				}
				continue
			}
			if want := float32(step.LogProb(tr.State(s+1, r), tr.Mean(s, r), tr.Stds[s])); lp != want || math.IsNaN(float64(lp)) {
				t.Errorf("lcm step %d row %d: log-prob %v, recomputed %v", s, r, lp, want)
			}
		}
	}
	res, err = sampler.Run(context.Background(), g, sampler.Config{Steps: 6, Rule: schedule.DPMpp2MRule, Images: 1, Particles: 3, Seed: 2, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	tr = res.Trajectories
	for s := range tr.Steps {
		if tr.Stds[s] != 0 || !math.IsNaN(float64(tr.LogProbs[s*tr.Rows])) {
			t.Errorf("dpm++2m step %d: std %v log-prob %v, want 0 and NaN", s, tr.Stds[s], tr.LogProbs[s*tr.Rows])
		}
		if !slices.Equal(tr.Mean(s, 0), tr.State(s+1, 0)) {
			t.Errorf("dpm++2m step %d: the state is not the step's mean", s)
		}
	}
}
