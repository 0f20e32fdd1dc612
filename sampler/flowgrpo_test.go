package sampler_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/sampler/step"
	"github.com/fksteer/fksteer/schedule"
)

// flowGRPOStep is Flow-GRPO's sde_step_with_logprob (flow_grpo/diffusers_patch/
// sd3_sde_with_logprob.py, sde_type "sde") written a second time, in float64 and in Flow-GRPO's
// own variables, so that step.FlowSDE and step.LogProb are checked against the reference
// rather than against themselves. sigmas is the scheduler's grid (1 = noise, ending in 0), i the
// step index, x the sample, v the model output (the velocity), prev the drawn prev_sample and a
// the noise level. It returns prev_sample_mean, the standard deviation std_dev_t*sqrt(-dt) that
// the draw uses, and log_prob (its mean over the elements).
func flowGRPOStep(sigmas []float64, i int, x, v, prev []float64, a float64) (mean []float64, std, logProb float64) {
	sigma, sigmaPrev, sigmaMax := sigmas[i], sigmas[i+1], sigmas[1]
	dt := sigmaPrev - sigma
	// std_dev_t = sqrt(sigma / (1 - where(sigma == 1, sigma_max, sigma))) * noise_level
	s := sigma
	if sigma == 1 {
		s = sigmaMax
	}
	stdDevT := math.Sqrt(sigma/(1-s)) * a
	// prev_sample_mean = sample*(1 + std_dev_t**2/(2*sigma)*dt)
	//                  + model_output*(1 + std_dev_t**2*(1-sigma)/(2*sigma))*dt
	mean = make([]float64, len(x))
	for j := range x {
		mean[j] = x[j]*(1+stdDevT*stdDevT/(2*sigma)*dt) + v[j]*(1+stdDevT*stdDevT*(1-sigma)/(2*sigma))*dt
	}
	// log_prob = -(prev - mean)**2 / (2*(std_dev_t*sqrt(-dt))**2) - log(std_dev_t*sqrt(-dt))
	//            - log(sqrt(2*pi)), then the mean over all but the batch dimension.
	std = stdDevT * math.Sqrt(-1*dt)
	for j := range x {
		d := prev[j] - mean[j]
		logProb += -(d*d)/(2*(std*std)) - math.Log(std) - math.Log(math.Sqrt(2*math.Pi))
	}
	return mean, std, logProb / float64(len(x))
}

// lastStdFlowGRPO is Flow-GRPO's standard deviation of the step onto sigma = 0 from sigma = t
// (t < 1): noise_level * sqrt(t/(1-t)) * sqrt(t).
func lastStdFlowGRPO(t, a float64) float64 { return a * math.Sqrt(t/(1-t)) * math.Sqrt(t) }

func float64s(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func gridSigmas(levels []schedule.Level) []float64 {
	out := make([]float64, len(levels))
	for i, l := range levels {
		out[i] = l.Sigma
	}
	return out
}

// TestFlowSDEMatchesFlowGRPOOnEveryStep drives sampler.FlowSDE through every step of 12-step
// flow grids, without and with SD3's shift 3, the last step (onto sigma = 0) included, and
// compares its mean, its standard deviation and the log-probability of a draw (as Run takes and
// records it: float32 state, float32 std) with flowGRPOStep. On the unshifted grid, which is
// also Flow-GRPO's Flux grid linspace(1, 1/12, 12) before its resolution shift, the last step's
// std is 0.7*sqrt((1/12)/(11/12))*sqrt(1/12) = 0.0609.
func TestFlowSDEMatchesFlowGRPOOnEveryStep(t *testing.T) {
	const (
		a = schedule.DefaultFlowSDENoise
		n = 12
		d = 256
	)
	r := rand.New(rand.NewPCG(21, 22))
	for _, shift := range []float64{0, 3} {
		levels, err := schedule.Flow{Shift: shift}.Levels(n)
		if err != nil {
			t.Fatal(err)
		}
		sigmas := gridSigmas(levels)
		x, v := make([]float32, d), make([]float32, d)
		x0, eps, mean, prev := make([]float32, d), make([]float32, d), make([]float32, d), make([]float32, d)
		for i := range n {
			t0 := sigmas[i]
			for j := range x {
				x[j], v[j] = float32(r.NormFloat64()), float32(r.NormFloat64())
				// A flow pipeline's conversions: x0 = x - t v, noise = x + (1-t) v.
				x0[j] = float32(float64(x[j]) - t0*float64(v[j]))
				eps[j] = float32(float64(x[j]) + (1-t0)*float64(v[j]))
			}
			std := step.FlowSDE(mean, x, x0, eps, levels[i], levels[i+1], a)
			std32 := float32(std)
			for j := range prev {
				prev[j] = mean[j] + std32*float32(r.NormFloat64())
			}
			lp := step.LogProb(prev, mean, float64(std32))

			wantMean, wantStd, wantLP := flowGRPOStep(sigmas, i, float64s(x), float64s(v), float64s(prev), a)
			if math.Abs(std-wantStd) > 1e-12*wantStd || !(std > 0) {
				t.Errorf("shift %v step %d: std %.15g, Flow-GRPO %.15g", shift, i, std, wantStd)
			}
			for j := range mean {
				if math.Abs(float64(mean[j])-wantMean[j]) > 2e-6*max(1, math.Abs(wantMean[j])) {
					t.Fatalf("shift %v step %d element %d: mean %.9g, Flow-GRPO %.9g", shift, i, j, mean[j], wantMean[j])
				}
			}
			if math.Abs(lp-wantLP) > 1e-5 || math.IsNaN(lp) || math.IsInf(lp, 0) {
				t.Errorf("shift %v step %d: log-prob %.9g, Flow-GRPO %.9g", shift, i, lp, wantLP)
			}
			if i == n-1 {
				if want := lastStdFlowGRPO(sigmas[i], a); math.Abs(std-want) > 1e-12 {
					t.Errorf("shift %v: last std %.9g, a sqrt(t/(1-t)) sqrt(t) = %.9g", shift, std, want)
				}
				t.Logf("shift %v, %d steps, a %v: last step from t = %.6f, std %.6f (Flow-GRPO %.6f); log-prob %.6f (Flow-GRPO %.6f)",
					shift, n, a, sigmas[i], std, wantStd, lp, wantLP)
			}
		}
	}
	if got := lastStdFlowGRPO(1.0/12, 0.7); math.Abs(got-0.0609) > 5e-5 {
		t.Errorf("the issue's figure: last std %v on the unshifted 12-step grid, want 0.0609", got)
	}
}

// flowRun records a 12-step run on the glyphs model (a flow model) with rule and an unset eta.
func flowRun(t *testing.T, p pipelines.Pipeline, rule schedule.Rule) (sampler.Config, *sampler.Trajectories) {
	t.Helper()
	cfg := sampler.Config{Prompt: `"A"`, Steps: 12, Rule: rule, Seed: 17, Images: 2, Particles: 2, Record: true}
	res, err := sampler.Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, res.Trajectories
}

// TestFlowSDERunMatchesFlowGRPO records a flow-sde run without an eta (so Flow-GRPO's default
// noise level 0.7) and checks every step of every sample, the last included, against
// flowGRPOStep fed with the recorded state, the model's velocity at it and the recorded next
// state: the stored std, mean and log-probability are what Flow-GRPO computes, and every
// log-probability is finite.
func TestFlowSDERunMatchesFlowGRPO(t *testing.T) {
	p := openGlyphs(t)
	ctx := context.Background()
	cfg, tr := flowRun(t, p, schedule.FlowSDERule)
	cond, err := p.Condition(ctx, nil, cfg.Prompt, cfg.CondOpts)
	if err != nil {
		t.Fatal(err)
	}
	sigmas := gridSigmas(tr.Levels)
	if sigmas[0] != 1 || sigmas[len(sigmas)-1] != 0 {
		t.Fatalf("glyphs grid %v: want a flow grid from 1 to 0", sigmas)
	}
	x0, eps, v := make([]float32, tr.Dim), make([]float32, tr.Dim), make([]float64, tr.Dim)
	for row := range tr.Rows {
		for s := range tr.Steps {
			if err := p.Predict(ctx, nil, tr.State(s, row), 1, tr.Levels[s], cond, cfg.Guidance, x0, eps); err != nil {
				t.Fatal(err)
			}
			for j := range v {
				v[j] = float64(eps[j]) - float64(x0[j])
			}
			wantMean, wantStd, wantLP := flowGRPOStep(sigmas, s, float64s(tr.State(s, row)), v, float64s(tr.State(s+1, row)), schedule.DefaultFlowSDENoise)
			if got := tr.Stds[s]; got != float64(float32(wantStd)) {
				t.Errorf("row %d step %d: std %.9g, Flow-GRPO %.9g", row, s, got, wantStd)
			}
			for j, m := range tr.Mean(s, row) {
				if math.Abs(float64(m)-wantMean[j]) > 1e-5*max(1, math.Abs(wantMean[j])) {
					t.Fatalf("row %d step %d element %d: mean %.9g, Flow-GRPO %.9g", row, s, j, m, wantMean[j])
				}
			}
			lp := float64(tr.LogProbs[s*tr.Rows+row])
			if math.IsNaN(lp) || math.IsInf(lp, 0) || math.Abs(lp-wantLP) > 1e-4*max(1, math.Abs(wantLP)) {
				t.Errorf("row %d step %d: log-prob %.9g, Flow-GRPO %.9g", row, s, lp, wantLP)
			}
		}
	}
	last := tr.Steps - 1
	want := lastStdFlowGRPO(sigmas[last], schedule.DefaultFlowSDENoise)
	t.Logf("glyphs, 12 steps, eta unset: first std %.6f, last std %.6f (formula %.6f)", tr.Stds[0], tr.Stds[last], want)
	if tr.Stds[0] != float64(float32(schedule.DefaultFlowSDENoise)) {
		t.Errorf("first std %v: with eta unset flow-sde's first step (t = 1) has std a = 0.7", tr.Stds[0])
	}
}

// TestFlowSDECleanEndsOnThePrediction: flow-sde-clean takes flow-sde's steps, with the same
// noise, up to the last, which lands on the x0 prediction: std 0, log-probability NaN, and a
// final sample equal to that step's mean.
func TestFlowSDECleanEndsOnThePrediction(t *testing.T) {
	p := openGlyphs(t)
	_, sde := flowRun(t, p, schedule.FlowSDERule)
	_, clean := flowRun(t, p, schedule.FlowSDECleanRule)
	last := clean.Steps - 1
	for row := range clean.Rows {
		for s := range last {
			if clean.Stds[s] != sde.Stds[s] || !equal32(clean.Mean(s, row), sde.Mean(s, row)) || !equal32(clean.State(s+1, row), sde.State(s+1, row)) {
				t.Fatalf("row %d step %d: flow-sde-clean differs from flow-sde before the last step", row, s)
			}
		}
		if lp := clean.LogProbs[last*clean.Rows+row]; clean.Stds[last] != 0 || !math.IsNaN(float64(lp)) {
			t.Errorf("row %d: last step std %v log-prob %v, want 0 and NaN", row, clean.Stds[last], lp)
		}
		if !equal32(clean.State(clean.Steps, row), clean.Mean(last, row)) {
			t.Errorf("row %d: final sample is not the last step's mean", row)
		}
		if sde.Stds[last] == 0 || equal32(sde.State(sde.Steps, row), sde.Mean(last, row)) {
			t.Errorf("row %d: flow-sde's last step drew no noise", row)
		}
	}
}

func equal32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
