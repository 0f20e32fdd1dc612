package sampler_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/bench"
	"github.com/fksteer/fksteer/generation/sheet"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/sampler/step"
	"github.com/fksteer/fksteer/schedule"
)

// searchConfig is a glyphs run toward a red "A" whose reward is closeness to a red colour: the
// prompt selects the A on four backgrounds, so the reward has something to choose.
func searchConfig(t *testing.T, m sampler.Method, budget int) sampler.Config {
	t.Helper()
	r, err := rewards.Parse(bench.GlyphsReward, rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sampler.Config{Prompt: exactPrompt, Steps: 20, Guidance: 1, Rule: schedule.DDIMRule, Eta: 1,
		Seed: 3, Images: 6, Method: m, Reward: r, Search: sampler.Search{Budget: budget}}
	if m == sampler.Noise || m == sampler.Random {
		cfg.Rule, cfg.Eta = schedule.EulerRule, 0
	}
	if cfg.Search.Budget == 0 || !m.SizedByBudget() {
		cfg.Particles = 1
	}
	return cfg
}

// TestSearchMethodsSpendTheirBudget: every search method stays within its budget (NFE per image,
// counted by the engine), spends most of it, and beats base sampling's mean reward at four
// times its compute.
func TestSearchMethodsSpendTheirBudget(t *testing.T) {
	p := openGlyphs(t)
	base, err := sampler.Run(context.Background(), p, searchConfig(t, sampler.Base, 0))
	if err != nil {
		t.Fatal(err)
	}
	baseNFE := base.Stats.NFE / 6
	budget := 4 * baseNFE
	for _, m := range []sampler.Method{sampler.BestOfN, sampler.FK, sampler.SVDD, sampler.Beam, sampler.Noise, sampler.Random} {
		cfg := searchConfig(t, m, budget)
		if m == sampler.FK {
			cfg.Lambda.Value, cfg.Potential, cfg.Resampler = 10, potentials.Diff, particles.Systematic
			cfg.Resampling.Every, cfg.Resampling.Start, cfg.Resampling.End = 2, 2, 16
		}
		res, err := sampler.Run(context.Background(), p, cfg)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		perImage := float64(res.Stats.NFE) / 6
		t.Logf("%-6s NFE/image %.0f of %d, mean reward %.4f (base %.4f at %d)", m, perImage, budget, mean(res), mean(base), baseNFE)
		if perImage > float64(budget) || perImage < 0.7*float64(budget) {
			t.Errorf("%s spent %.0f NFE per image of a budget of %d; want most of it and never more", m, perImage, budget)
		}
		if mean(res) <= mean(base) {
			t.Errorf("%s: mean reward %.4f at 4x the compute is no better than base's %.4f", m, mean(res), mean(base))
		}
	}
}

// mean is the mean reward of a run's outputs.
func mean(res *sampler.Result) float64 {
	var s float64
	for _, o := range res.Outputs {
		s += o.Reward
	}
	return s / float64(len(res.Outputs))
}

// TestSearchIsBatchIndependent: image g of a batched run is the image a run of seed Seed+g gives
// alone, for every search method (their candidates, children and neighbours draw from streams
// of the group's seed).
func TestSearchIsBatchIndependent(t *testing.T) {
	p := openGlyphs(t)
	for _, m := range []sampler.Method{sampler.SVDD, sampler.Beam, sampler.Noise} {
		cfg := searchConfig(t, m, 160)
		cfg.Images = 3
		all, err := sampler.Run(context.Background(), p, cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Images, cfg.Seed = 1, cfg.Seed+2
		alone, err := sampler.Run(context.Background(), p, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(all.Images.At(2), alone.Images.At(0)) {
			t.Errorf("%s: image 2 of a batch of 3 differs from the same seed run alone", m)
		}
	}
}

// TestSearchRecordsTheKeptPaths: a recorded svdd, beam or noise run stores, for each final
// sample, a trajectory whose every stochastic step's log-probability is that of the next
// recorded state under the recorded step distribution (so beam's kept children are followed
// across their parents' rows), and which ends in the returned sample.
func TestSearchRecordsTheKeptPaths(t *testing.T) {
	p := openGlyphs(t)
	for _, m := range []sampler.Method{sampler.SVDD, sampler.Beam, sampler.Noise} {
		cfg := searchConfig(t, m, 0)
		cfg.Particles, cfg.Images, cfg.Record = 3, 2, true
		cfg.Select = sampler.SelectAll
		res, err := sampler.Run(context.Background(), p, cfg)
		if err != nil {
			t.Fatal(err)
		}
		tr := res.Trajectories
		checked := 0
		for i := range tr.Rows {
			states, means, stds, lps := tr.Trajectory(i)
			for s := range tr.Steps {
				if stds[s] == 0 {
					continue
				}
				want := step.LogProb(states[s+1], means[s], stds[s])
				if got := float64(lps[s]); math.Abs(got-want) > 1e-4*math.Max(1, math.Abs(want)) {
					t.Fatalf("%s: row %d step %d: recorded log-prob %g, the recorded states give %g", m, i, s, got, want)
				}
				checked++
			}
		}
		if m != sampler.Noise && checked == 0 {
			t.Errorf("%s: no stochastic step was recorded", m)
		}
		if m == sampler.Beam && len(res.Events) == 0 {
			t.Errorf("beam: no branching was recorded in the genealogy")
		}
	}
}

// TestSearchObservers: svdd's and beam's evaluated steps draw as contact sheets (each kept
// candidate, joined to the beam it came from).
func TestSearchObservers(t *testing.T) {
	p := openGlyphs(t)
	for _, m := range []sampler.Method{sampler.SVDD, sampler.Beam} {
		cfg := searchConfig(t, m, 0)
		cfg.Particles, cfg.Images, cfg.Steps = 2, 1, 6
		rec := sheet.NewRecorder(cfg.Particles)
		evaluated := 0
		cfg.Observer = func(si sampler.StepInfo) {
			rec.Observe(si)
			if si.Evaluated {
				evaluated++
			}
		}
		res, err := sampler.Run(context.Background(), p, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if evaluated == 0 {
			t.Errorf("%s: no evaluated step was observed", m)
		}
		if img := rec.Genealogy(0, res, string(m)); img == nil || img.Bounds().Dx() == 0 {
			t.Errorf("%s: no contact sheet", m)
		}
	}
}

// cancelling is a reward that cancels its run's context at its calls-th call, as Ctrl-C would
// in the middle of a run.
type cancelling struct {
	rewards.Reward
	cancel func()
	calls  int
}

func (c *cancelling) Score(ctx context.Context, imgs pixels.Images, prompt string, dst []float64) error {
	if c.calls--; c.calls == 0 {
		c.cancel()
	}
	return c.Reward.Score(ctx, imgs, prompt, dst)
}

// TestSearchStopsWhenCancelled: every method returns the context's error soon after it is
// cancelled (here by the reward's second call), without finishing its budget.
func TestSearchStopsWhenCancelled(t *testing.T) {
	p := openGlyphs(t)
	for _, m := range []sampler.Method{sampler.FK, sampler.SVDD, sampler.Beam, sampler.DTS, sampler.DTSStar, sampler.Noise} {
		ctx, cancel := context.WithCancel(context.Background())
		cfg := searchConfig(t, m, 400)
		if m == sampler.FK {
			cfg.Lambda.Value, cfg.Potential, cfg.Resampler = 10, potentials.Diff, particles.Systematic
			cfg.Resampling.Every, cfg.Resampling.Start, cfg.Resampling.End = 2, 2, 16
		}
		if m == sampler.DTS || m == sampler.DTSStar {
			cfg.Lambda.Value = 8
		}
		cfg.Reward = &cancelling{Reward: cfg.Reward, cancel: cancel, calls: 2}
		res, err := sampler.Run(ctx, p, cfg)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: cancelled run returned %v, want context.Canceled", m, err)
		}
		if res != nil {
			t.Errorf("%s: a cancelled run returned a result", m)
		}
	}
}

// TestBudgetSizesEachMethod: a budget in NFE per image sizes each method's width, guided rows
// counting twice, and a noise search too poor for a round of its N neighbours solves what fits.
func TestBudgetSizesEachMethod(t *testing.T) {
	info := pipelines.Info{Conditioning: pipelines.VectorCond, Channels: 1, Height: 2, Width: 2}
	color, err := rewards.Parse("color:target=#cc2222", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m        sampler.Method
		guidance float64
		budget   int
		check    func(sampler.Config) bool
		want     string
	}{
		{sampler.FK, 1, 200, func(c sampler.Config) bool { return c.Particles == 4 }, "K = 4"},
		{sampler.FK, 7, 200, func(c sampler.Config) bool { return c.Particles == 2 }, "K = 2 (guided rows count twice)"},
		{sampler.SVDD, 1, 200, func(c sampler.Config) bool { return c.Search.Candidates == 4 }, "M = 4"},
		{sampler.Beam, 1, 200, func(c sampler.Config) bool { return c.Particles == 2 }, "B = 2 beams of 2 children"},
		{sampler.Noise, 1, 400, func(c sampler.Config) bool { return c.Search.Rounds == 2 && c.Search.Neighbours == 4 }, "2 rounds of 4"},
		{sampler.Noise, 1, 100, func(c sampler.Config) bool { return c.Search.Rounds == 1 && c.Search.Neighbours == 2 }, "1 round of 2"},
		{sampler.Random, 1, 200, func(c sampler.Config) bool { return c.Search.Neighbours == 4 }, "4 noises"},
	} {
		cfg := sampler.Config{Prompt: "x", Steps: 50, Guidance: c.guidance, Images: 1, Method: c.m, Rule: schedule.DDIMRule, Eta: 1,
			Reward: color, Lambda: potentials.Lambda{Value: 1}, Potential: potentials.Diff,
			Resampling: potentials.Schedule{Every: 5, Start: 5, End: 30}, Search: sampler.Search{Budget: c.budget}}
		if c.m == sampler.Noise || c.m == sampler.Random {
			cfg.Rule, cfg.Eta = schedule.EulerRule, 0
		}
		if !c.m.SizedByBudget() {
			cfg.Particles = 1
		}
		if err := cfg.ValidateFor(info); err != nil {
			t.Fatalf("%s at %d: %v", c.m, c.budget, err)
		}
		if !c.check(cfg) || cfg.Cost(info) > c.budget {
			t.Errorf("%s at %d NFE (guidance %g): K %d, search %+v, cost %d; want %s within the budget",
				c.m, c.budget, c.guidance, cfg.Particles, cfg.Search, cfg.Cost(info), c.want)
		}
	}
}
