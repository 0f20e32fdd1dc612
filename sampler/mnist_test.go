package sampler_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/fksteer/fksteer/sampler"
)

// TestMNISTConditionalSamplesAreTheirDigit generates 4 samples of every digit with the real DiT
// (50 steps, guidance 2) and has the real classifier read them: at least 38 of 40 must be read as
// the digit asked for, with the deterministic Euler sampler and with the stochastic flow step.
func TestMNISTConditionalSamplesAreTheirDigit(t *testing.T) {
	skipUnderRace(t)
	p := openMNIST(t)
	judge := mnistJudge(t)
	for _, tc := range []struct {
		rule sampler.Rule
		eta  float64
	}{{sampler.Euler, 0}, {sampler.DDIMRule, 1}} {
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
