package sampler_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// flatPipeline is a pipeline without a model: 1 x 2 x 2 pixel states on a rectified-flow grid,
// a denoiser that predicts x0 = 0, and decoding x/2 + 1/2. It lets steering tests run without
// ONNX Runtime.
type flatPipeline struct{}

func (flatPipeline) Info() pipelines.Info {
	return pipelines.Info{Name: "flat", Channels: 1, Height: 2, Width: 2, ImageChannels: 1, ImageHeight: 2, ImageWidth: 2,
		Prediction: pipelines.PredictFlow, Conditioning: pipelines.Unconditioned}
}
func (flatPipeline) Schedule(steps int) ([]schedule.Level, error) {
	return schedule.Flow{}.Levels(steps)
}
func (flatPipeline) Condition(context.Context, *pipelines.Stats, string, pipelines.CondOptions) (pipelines.Cond, error) {
	return pipelines.Cond{Kind: pipelines.Unconditioned}, nil
}
func (flatPipeline) Predict(_ context.Context, _ *pipelines.Stats, x []float32, _ int, _ schedule.Level, _ pipelines.Cond, _ float64, x0, eps []float32) error {
	clear(x0)
	copy(eps, x)
	return nil
}
func (flatPipeline) Decode(_ context.Context, _ *pipelines.Stats, x []float32, n int, dst pixels.Images) error {
	for i, v := range x[:n*4] {
		dst.Pix[i] = min(1, max(0, v/2+0.5))
	}
	return nil
}
func (flatPipeline) Stats() pipelines.Stats { return pipelines.Stats{} }
func (flatPipeline) Close() error           { return nil }

// slotReward scores particle slot k of every group with score(k), whatever the image.
type slotReward struct {
	k     int
	score func(k int) float64
}

func (r slotReward) Name() string { return "slots" }
func (r slotReward) Close() error { return nil }
func (r slotReward) Score(_ context.Context, imgs pixels.Images, _ string, dst []float64) error {
	for i := range dst {
		dst[i] = r.score(i % r.k)
	}
	return nil
}

func fkRun(reward rewards.Reward, k int, observe func(sampler.StepInfo)) (*sampler.Result, error) {
	return sampler.Run(context.Background(), flatPipeline{}, sampler.Config{
		Steps: 8, Rule: schedule.DDIMRule, Eta: 1, Images: 2, Particles: k, Seed: 3,
		Method: sampler.FK, Reward: reward, Potential: potentials.Immediate, Lambda: potentials.Lambda{Value: 1},
		Resampling: potentials.Schedule{Every: 2, Start: 2, End: 6}, Resampler: particles.Multinomial,
		Select: sampler.SelectAll, Observer: observe,
	})
}

// TestNaNRewardGetsWeightZero: a particle whose reward is NaN (slot 0) or -Inf (slot 1) at
// every evaluation is never chosen as a parent by resampling and ends with log-weight -Inf; the
// finite particles keep all the weight.
func TestNaNRewardGetsWeightZero(t *testing.T) {
	const k = 5
	reward := slotReward{k: k, score: func(slot int) float64 {
		switch slot {
		case 0:
			return math.NaN()
		case 1:
			return math.Inf(-1)
		}
		return float64(slot) / 10
	}}
	resamplings := 0
	res, err := fkRun(reward, k, func(si sampler.StepInfo) {
		if !si.Evaluated {
			return
		}
		for _, r := range si.Resampled {
			if r {
				resamplings++
			}
		}
		for row, parent := range si.Parents {
			if si.Resampled[row/k] && (parent == 0 || parent == 1) {
				t.Errorf("step %d: slot %d of image %d was copied from invalid slot %d", si.Step, row%k, row/k, parent)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if resamplings == 0 {
		t.Fatal("no group was resampled: the test checks nothing")
	}
	for g := range 2 {
		var total float64
		for slot := range k {
			lw := res.LogWeights[g*k+slot]
			if slot < 2 {
				if !math.IsInf(lw, -1) {
					t.Errorf("image %d slot %d (invalid reward): log-weight %g, want -Inf", g, slot, lw)
				}
				continue
			}
			if math.IsNaN(lw) || math.IsInf(lw, 0) {
				t.Errorf("image %d slot %d: log-weight %g", g, slot, lw)
			}
			total += math.Exp(lw)
		}
		if math.Abs(total-1) > 1e-9 {
			t.Errorf("image %d: finite particles' weights sum to %g, want 1", g, total)
		}
	}
}

// TestAllNaNRewardsStop: when no particle of a group has a finite reward the run stops with an
// error that says so, instead of resampling from nothing.
func TestAllNaNRewardsStop(t *testing.T) {
	_, err := fkRun(slotReward{k: 3, score: func(int) float64 { return math.NaN() }}, 3, nil)
	if err == nil || !strings.Contains(err.Error(), "no finite score") || !strings.Contains(err.Error(), "slots") {
		t.Fatalf("error %v, want one saying reward slots gave no finite score", err)
	}
}

// TestOutputsReportRewardParts: with a composite reward every output carries its parts, each
// with its weight and score, and the reward is their weighted sum.
func TestOutputsReportRewardParts(t *testing.T) {
	const k = 3
	a := slotReward{k: k, score: func(slot int) float64 { return float64(slot) }}
	b := slotReward{k: k, score: func(int) float64 { return 10 }}
	c, err := rewards.NewComposite([]rewards.Reward{a, b}, []float64{0.5, 2})
	if err != nil {
		t.Fatal(err)
	}
	res, err := fkRun(c, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range res.Outputs {
		want := []rewards.PartScore{{Name: "slots", Weight: 0.5, Score: float64(o.Particle)}, {Name: "slots#2", Weight: 2, Score: 10}}
		if len(o.Parts) != 2 || o.Parts[0] != want[0] || o.Parts[1] != want[1] {
			t.Errorf("output %d/%d: parts %+v, want %+v", o.Group, o.Particle, o.Parts, want)
		}
		if o.Reward != 0.5*float64(o.Particle)+20 {
			t.Errorf("output %d/%d: reward %g, want the weighted sum %g", o.Group, o.Particle, o.Reward, 0.5*float64(o.Particle)+20)
		}
	}
	// Rewards that do not explain themselves leave Parts nil.
	res, err = fkRun(a, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outputs[0].Parts != nil {
		t.Errorf("a plain reward's output has parts %+v", res.Outputs[0].Parts)
	}
}

// TestResultCarriesWhatTheRunKnew: a result holds every row's final reward broken into parts
// (a plain reward is its one part with weight 1), the genealogy the ESS trace reports, the
// conditioning the model was given and the settings with their defaults filled, so that a
// consumer never runs a model again to recover them.
func TestResultCarriesWhatTheRunKnew(t *testing.T) {
	const k = 3
	res, err := fkRun(slotReward{k: k, score: func(slot int) float64 { return float64(slot) }}, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	for row, parts := range res.Parts {
		want := rewards.PartScore{Name: "slots", Weight: 1, Score: res.Rewards[row]}
		if len(parts) != 1 || parts[0] != want {
			t.Errorf("row %d: parts %+v, want %+v", row, parts, want)
		}
	}
	var fromESS []particles.Event
	for _, p := range res.Stats.ESS {
		for g, resampled := range p.Resampled {
			if resampled {
				fromESS = append(fromESS, particles.Event{Step: p.Step, Group: g})
			}
		}
	}
	if len(res.Events) != len(fromESS) || len(res.Events) != res.Stats.Resamplings || len(res.Events) == 0 {
		t.Fatalf("%d events, %d resamplings in the ESS trace, %d counted", len(res.Events), len(fromESS), res.Stats.Resamplings)
	}
	for i, e := range res.Events {
		if e.Step != fromESS[i].Step || e.Group != fromESS[i].Group || len(e.Parents) != k {
			t.Errorf("event %d: %+v, ESS trace %+v", i, e, fromESS[i])
		}
	}
	if res.Cond.Kind != pipelines.Unconditioned || res.Model.Name != "flat" {
		t.Errorf("cond %+v, model %q", res.Cond, res.Model.Name)
	}
	if s := res.Settings; s.Method != sampler.FK || s.Particles != k || s.Resampler != particles.Multinomial || s.Observer != nil {
		t.Errorf("settings %+v", s)
	}
	// A flow-sde run without eta records the noise level it drew with; a base run without a
	// reward has neither rewards nor parts.
	res, err = sampler.Run(context.Background(), flatPipeline{}, sampler.Config{Steps: 4, Rule: schedule.FlowSDERule, Images: 1, Particles: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Settings.Eta != schedule.DefaultFlowSDENoise || res.Settings.Method != sampler.Base || res.Parts != nil || !math.IsNaN(res.Rewards[0]) {
		t.Errorf("eta %g, method %s, parts %v, reward %g", res.Settings.Eta, res.Settings.Method, res.Parts, res.Rewards[0])
	}
}

// TestBaseRunKeepsNaNRewards: a base run only reports its final rewards, so a group of NaN
// scores is returned as NaN (a dataset records null) rather than failing the run, as it does
// for methods that decide by the reward.
func TestBaseRunKeepsNaNRewards(t *testing.T) {
	nan := slotReward{k: 2, score: func(int) float64 { return math.NaN() }}
	cfg := sampler.Config{Steps: 4, Rule: schedule.DDIMRule, Eta: 1, Images: 2, Particles: 2, Reward: nan}
	res, err := sampler.Run(context.Background(), flatPipeline{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for row, r := range res.Rewards {
		if !math.IsNaN(r) || len(res.Parts[row]) != 1 || !math.IsNaN(res.Parts[row][0].Score) {
			t.Errorf("row %d: reward %g, parts %+v", row, r, res.Parts[row])
		}
	}
	cfg.Method = sampler.BestOfN
	if _, err := sampler.Run(context.Background(), flatPipeline{}, cfg); err == nil || !strings.Contains(err.Error(), "no finite score") {
		t.Errorf("best-of-N over NaN rewards: %v, want an error saying no score is finite", err)
	}
}
