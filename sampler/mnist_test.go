package sampler_test

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// TestMNISTConditionalSamplesAreTheirDigit generates 4 samples of every digit with the real DiT
// (50 steps, guidance 2) and has the real classifier read them: at least 38 of 40 must be read as
// the digit asked for, with the deterministic Euler sampler and with the stochastic flow step.
func TestMNISTConditionalSamplesAreTheirDigit(t *testing.T) {
	skipUnderRace(t)
	p := openMNIST(t)
	judge := mnistJudge(t)
	for _, tc := range []struct {
		rule schedule.Rule
		eta  float64
	}{{schedule.EulerRule, 0}, {schedule.DDIMRule, 1}} {
		t.Run(string(tc.rule), func(t *testing.T) {
			correct := 0
			var misses []string
			for digit := range 10 {
				res, err := sampler.Run(context.Background(), p, sampler.Config{
					Prompt: fmt.Sprint(digit), Steps: 50, Guidance: 2, Rule: tc.rule, Eta: tc.eta,
					Seed: uint64(100 * digit), Images: 4, Particles: 1,
				})
				if err != nil {
					t.Fatal(err)
				}
				got := make([]int, res.Images.N)
				if err := judge.TopClass(context.Background(), res.Images, got); err != nil {
					t.Fatal(err)
				}
				for i, g := range got {
					if g == digit {
						correct++
					} else {
						misses = append(misses, fmt.Sprintf("%d read as %d (seed %d)", digit, g, res.Outputs[i].Seed))
					}
				}
			}
			t.Logf("%s: %d/40 read as the requested digit; misses: %v", tc.rule, correct, misses)
			if correct < 38 {
				t.Errorf("%s: only %d/40 samples read as their digit (want >= 38): %v", tc.rule, correct, misses)
			}
		})
	}
}

// TestMNISTFlowSDEDrawsEveryStep runs flow-sde on the real MNIST DiT, which recommends no eta,
// without one: the run uses Flow-GRPO's default noise level 0.7 (the first step, from t = 1, has
// std a exactly), draws the last step as Flow-GRPO does (std a*sqrt(t/(1-t))*sqrt(t) from
// t = 1/12 on the unshifted 12-step grid: 0.0609), and every step has a finite log-probability.
func TestMNISTFlowSDEDrawsEveryStep(t *testing.T) {
	p := openMNIST(t)
	res, err := sampler.Run(context.Background(), p, sampler.Config{
		Prompt: "3", Steps: 12, Guidance: 2, Rule: schedule.FlowSDERule, Seed: 8, Images: 1, Particles: 2, Record: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Trajectories
	last := tr.Steps - 1
	if tr.Levels[last].Sigma != 1.0/12 || tr.Levels[last+1].Sigma != 0 {
		t.Fatalf("MNIST grid ends %v, %v: want the unshifted grid's 1/12 and 0", tr.Levels[last].Sigma, tr.Levels[last+1].Sigma)
	}
	if want := float64(float32(schedule.DefaultFlowSDENoise)); tr.Stds[0] != want {
		t.Errorf("first std %v, want a = %v (eta unset)", tr.Stds[0], want)
	}
	want := lastStdFlowGRPO(1.0/12, schedule.DefaultFlowSDENoise)
	if tr.Stds[last] != float64(float32(want)) {
		t.Errorf("last std %v, want %v", tr.Stds[last], want)
	}
	t.Logf("MNIST DiT, 12 steps, eta unset: last step std %.6f, Flow-GRPO's formula %.6f", tr.Stds[last], want)
	for i, lp := range tr.LogProbs {
		if math.IsNaN(float64(lp)) || math.IsInf(float64(lp), 0) {
			t.Errorf("step %d row %d: log-prob %v", i/tr.Rows, i%tr.Rows, lp)
		}
	}
}
