package sampler_test

import (
	"context"
	"math"
	"testing"

	"github.com/fksteer/fksteer/bench"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// The exactness problem (bench.GlyphsTarget): the built-in glyphs model's denoiser is the exact
// posterior mean of a mixture of data images, so a sample is (up to the last step's residual
// noise) one of those images, and the FK target p(x0 | prompt) exp(lambda r(x0)) / Z is an
// explicit distribution over them that can be computed exactly.
const (
	exactPrompt = bench.GlyphsPrompt // selects the red A on each of the four backgrounds
	exactLambda = bench.GlyphsLambda
	exactSteps  = bench.GlyphsSteps
	exactEta    = bench.GlyphsEta
)

type exactSetup struct {
	p      *pipelines.Denoiser
	reward rewards.Reward
	// exact is the problem's answer; target is the exact FK target over its images and prior
	// the unsteered one.
	exact         *bench.GlyphsTarget
	target, prior []float64
	// lastResamplings counts the group resamplings of the last run, for the logs.
	lastResamplings int
}

func newExactSetup(t *testing.T) *exactSetup {
	t.Helper()
	skipUnderRace(t)
	s := &exactSetup{p: openGlyphs(t)}
	var err error
	if s.reward, err = rewards.Parse(bench.GlyphsReward, rewards.Env{}); err != nil {
		t.Fatal(err)
	}
	// The exact target, with the reward computed by the same code on each data image.
	if s.exact, err = bench.NewGlyphsTarget(context.Background(), exactPrompt, s.reward, exactLambda); err != nil {
		t.Fatal(err)
	}
	s.target, s.prior = s.exact.Target, s.exact.Prior
	return s
}

// distribution runs cfg and returns the weighted distribution of its final particles over the
// selected data images, averaged over the run's groups (each group's weights are normalised).
func (s *exactSetup) distribution(t *testing.T, cfg sampler.Config) []float64 {
	t.Helper()
	cfg.Prompt, cfg.Steps, cfg.Rule, cfg.Eta, cfg.Guidance = exactPrompt, exactSteps, schedule.DDIMRule, exactEta, 1
	cfg.Select = sampler.SelectAll
	if cfg.Method == sampler.FK {
		cfg.Reward = s.reward
	}
	res, err := sampler.Run(context.Background(), s.p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.lastResamplings = res.Stats.Resamplings
	weights := make([]float64, res.Images.N)
	for i := range weights {
		w := 1 / float64(cfg.Particles)
		if cfg.Method == sampler.FK {
			w = math.Exp(res.LogWeights[i])
		}
		weights[i] = w / float64(cfg.Images)
	}
	dist, far := s.exact.Histogram(res.Images, weights)
	if far > 0 {
		t.Fatalf("%d of %d samples are no selected data image (farther than RMS %g from each)", far, res.Images.N, bench.FarRMS)
	}
	return dist
}

// fkConfig is the FK run of the exactness tests: lambda 8, potentials evaluated at steps 8, 16
// and 24 of 40 and after the last, systematic resampling. More frequent evaluations make the
// intermediate targets of sum and immediate (exp(lambda * a sum of rewards)) so peaked that K = 256
// particles collapse onto a few lineages before the final correction can reweight them.
func fkConfig(kind potentials.Kind, k, groups int) sampler.Config {
	return sampler.Config{
		Seed: 1, Images: groups, Particles: k, Method: sampler.FK, Potential: kind,
		Lambda:     potentials.Lambda{Value: exactLambda},
		Resampling: potentials.Schedule{Every: 8, Start: 8, End: 24},
		Resampler:  particles.Systematic,
	}
}

// TestUnsteeredSamplerReproducesThePrior is the baseline the FK tests stand on: the stochastic
// sampler they use (DDIM, eta 0.5, 40 steps) must itself draw the data images with their prior
// probabilities. 2048 samples; multinomial noise alone gives TV ~0.015 here. (With eta 1 the
// posterior-mean steps lose between-image variance and over-pick the grey background by ~0.025
// even at 40 steps; FK is exact for any stochastic sampler, so the tests use eta 0.5.)
func TestUnsteeredSamplerReproducesThePrior(t *testing.T) {
	s := newExactSetup(t)
	base := s.distribution(t, sampler.Config{Seed: 1, Images: 1, Particles: 2048, Method: sampler.Base})
	d := bench.TV(base, s.prior)
	t.Logf("unsteered, 2048 samples: %.3f (prior %.3f), TV %.4f", base, s.prior, d)
	if d > 0.05 {
		t.Errorf("unsteered sampler is TV %.4f from the prior; want <= 0.05", d)
	}
}

// TestFKIsExactOnGlyphs: for each potential, K = 256 particles (8 images, 2048 particles in all)
// give a weighted final population within TV 0.05 of the exact target p(x0|prompt) exp(lambda r)/Z,
// and closer to it than K = 8 with the same budget (256 images of 8), whose self-normalised
// weights carry an O(1/K) bias.
func TestFKIsExactOnGlyphs(t *testing.T) {
	s := newExactSetup(t)
	t.Logf("exact target %.3f (prior %.3f, TV between them %.3f)", s.target, s.prior, bench.TV(s.target, s.prior))
	for _, kind := range potentials.Kinds() {
		big := s.distribution(t, fkConfig(kind, 256, 8))
		small := s.distribution(t, fkConfig(kind, 8, 256))
		dBig, dSmall := bench.TV(big, s.target), bench.TV(small, s.target)
		t.Logf("%-9s K=256: %.3f TV %.4f | K=8: %.3f TV %.4f", kind, big, dBig, small, dSmall)
		if dBig > 0.05 {
			t.Errorf("%s: K=256 is TV %.4f from the exact target; want <= 0.05", kind, dBig)
		}
		if dBig >= dSmall {
			t.Errorf("%s: K=256 (TV %.4f) is not closer to the target than K=8 (TV %.4f)", kind, dBig, dSmall)
		}
	}
}

// TestAdaptiveFKIsExactAndDroppingWeightsIsNot: with adaptive resampling (the reference's
// threshold, ESS < K/2) the weights of evaluations that do not resample accumulate into the next,
// and FK stays exact; the reference implementation's variant, which discards them, is measurably
// biased (at least 0.03 farther in TV, three times the K = 256 noise seen above). Lambda ramps
// linearly from 1 to 8: the target depends only on the final lambda, and the ramp keeps sum's
// intermediate targets (exp(lambda * a sum of running sums of rewards)) from collapsing the
// particles onto a few lineages while weights accumulate.
func TestAdaptiveFKIsExactAndDroppingWeightsIsNot(t *testing.T) {
	s := newExactSetup(t)
	for _, kind := range potentials.Kinds() {
		cfg := fkConfig(kind, 256, 8)
		cfg.Resampling.ESSThreshold = 0.5
		cfg.Lambda = potentials.Lambda{Value: exactLambda, Start: 1, Ramp: potentials.Linear}
		good := s.distribution(t, cfg)
		resamplings := s.lastResamplings
		cfg.Resampling.DropUnresampledWeights = true
		dropped := s.distribution(t, cfg)
		dGood, dDrop := bench.TV(good, s.target), bench.TV(dropped, s.target)
		t.Logf("%-9s adaptive: %.3f TV %.4f (%d of 24 intermediate group evaluations resampled) | dropping weights: %.3f TV %.4f",
			kind, good, dGood, resamplings, dropped, dDrop)
		if dGood > 0.05 {
			t.Errorf("%s adaptive: TV %.4f from the exact target; want <= 0.05", kind, dGood)
		}
		if dDrop < dGood+0.03 {
			t.Errorf("%s: dropping unresampled weights (TV %.4f) is not measurably farther than keeping them (TV %.4f)", kind, dDrop, dGood)
		}
	}
}
