package sampler_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// loggingPipeline is gaussPipeline that logs the level of every model call and the first
// states it was given.
type loggingPipeline struct {
	gaussPipeline
	log *callLog
}

type callLog struct {
	times []float64
	first []float32
}

func (p loggingPipeline) Predict(ctx context.Context, st *pipelines.Stats, x []float32, n int, l schedule.Level, c pipelines.Cond, g float64, x0, eps []float32) error {
	if p.log.first == nil {
		p.log.first = slices.Clone(x[:n*len(p.mu)])
	}
	p.log.times = append(p.log.times, l.Time)
	return p.gaussPipeline.Predict(ctx, st, x, n, l, c, g, x0, eps)
}

// TestImageToImageWalksTheEndOfTheSchedule: strength 0.5 of 10 steps makes exactly 5 model
// calls, at levels[5..9] of the 10-step schedule; every particle starts at
// Alpha*init + Sigma*z on levels[5], z drawn from its own stream (recomputed here from
// particles.Streams); the steps walked are what Stats, StepInfo and the recording report.
// Strength 1 walks all 10 steps from levels[0].
func TestImageToImageWalksTheEndOfTheSchedule(t *testing.T) {
	const (
		steps     = 10
		groups, k = 2, 3
		seed      = 11
	)
	p := loggingPipeline{gaussPipeline: newGauss(16, 0.5, false), log: &callLog{}}
	d := len(p.mu)
	init := make([]float32, d)
	for j := range init {
		init[j] = float32(math.Sin(float64(j)))
	}
	levels, err := p.Schedule(steps)
	if err != nil {
		t.Fatal(err)
	}
	var observed []int
	cfg := sampler.Config{
		Steps: steps, Rule: schedule.DDPMRule, Images: groups, Particles: k, Seed: seed, Record: true,
		Init: init, Strength: 0.5, Observer: func(si sampler.StepInfo) { observed = append(observed, si.Steps) },
	}
	res, err := sampler.Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want []float64
	for _, l := range levels[5:steps] {
		want = append(want, l.Time)
	}
	if !slices.Equal(p.log.times, want) {
		t.Errorf("model called at times %v, want %v (levels[5:10])", p.log.times, want)
	}
	if res.Stats.Steps != 5 || res.Trajectories.Steps != 5 || len(observed) != 5 || observed[0] != 5 {
		t.Errorf("steps walked: Stats %d, Trajectories %d, observer calls %d reporting %v; want 5", res.Stats.Steps, res.Trajectories.Steps, len(observed), observed)
	}
	if !slices.Equal(res.Trajectories.Levels, levels[5:]) {
		t.Errorf("recorded levels %v, want levels[5:] = %v", res.Trajectories.Levels, levels[5:])
	}
	streams, err := particles.NewStreams([]uint64{seed, seed + 1}, k)
	if err != nil {
		t.Fatal(err)
	}
	z := make([]float32, d)
	l := levels[5]
	for row := range groups * k {
		streams.FillNormal(row, z)
		got := p.log.first[row*d : (row+1)*d]
		for j := range z {
			w := l.Alpha*float64(init[j]) + l.Sigma*float64(z[j])
			if math.Abs(float64(got[j])-w) > 1e-6 {
				t.Fatalf("row %d element %d starts at %v, want Alpha*init + Sigma*z = %v", row, j, got[j], w)
			}
		}
		if !slices.Equal(got, res.Trajectories.State(0, row)) {
			t.Fatalf("row %d: recorded x_T is not the state the model first saw", row)
		}
	}

	p.log.times, p.log.first = nil, nil
	cfg.Strength, cfg.Observer = 1, nil
	res, err = sampler.Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.log.times) != steps || p.log.times[0] != levels[0].Time || res.Stats.Steps != steps {
		t.Errorf("strength 1: %d model calls from time %v, %d steps; want %d from %v", len(p.log.times), p.log.times[0], res.Stats.Steps, steps, levels[0].Time)
	}
}

// TestImageToImageIsIndependentOfBatching: an image-to-image run of two images gives each the
// same result as a run of that image alone (same seed), as a run from noise does.
func TestImageToImageIsIndependentOfBatching(t *testing.T) {
	g := newGauss(16, 0.5, true)
	cfg := sampler.Config{Steps: 12, Rule: schedule.LCMRule, Images: 2, Particles: 2, Seed: 21, Init: g.mu, Strength: 0.7}
	both, err := sampler.Run(context.Background(), g, cfg)
	if err != nil {
		t.Fatal(err)
	}
	one := cfg
	one.Images, one.Seed = 1, cfg.Seed+1
	alone, err := sampler.Run(context.Background(), g, one)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(alone.All.Pix, both.All.Pix[2*16:]) {
		t.Error("image 1 differs when sampled alone")
	}
}

// TestImageToImageFK: FK steering counts its schedule in the steps walked. 20 steps at strength
// 0.5 walk 10; evaluations at steps 2, 4 and 6 of those, then the final one.
func TestImageToImageFK(t *testing.T) {
	res, err := sampler.Run(context.Background(), flatPipeline{}, sampler.Config{
		Steps: 20, Rule: schedule.DDIMRule, Eta: 1, Images: 2, Particles: 4, Seed: 3,
		Init: []float32{0.5, -0.5, 0.25, 0}, Strength: 0.5,
		Method: sampler.FK, Reward: slotReward{k: 4, score: func(k int) float64 { return float64(k) }},
		Potential: potentials.Diff, Lambda: potentials.Lambda{Value: 1},
		Resampling: potentials.Schedule{Every: 2, Start: 2, End: 6}, Resampler: particles.Systematic,
	})
	if err != nil {
		t.Fatal(err)
	}
	var evals []int
	for _, pt := range res.Stats.ESS {
		evals = append(evals, pt.Step)
	}
	if res.Stats.Steps != 10 || !slices.Equal(evals, []int{2, 4, 6}) {
		t.Errorf("%d steps with evaluations at %v; want 10 with evaluations at [2 4 6]", res.Stats.Steps, evals)
	}
}

func TestImageToImageErrors(t *testing.T) {
	g := newGauss(16, 0.5, false)
	for name, cfg := range map[string]sampler.Config{
		"wrong length": {Steps: 10, Images: 1, Particles: 1, Init: make([]float32, 15), Strength: 0.5},
		"no step":      {Steps: 10, Images: 1, Particles: 1, Init: make([]float32, 16), Strength: 0.09},
	} {
		if _, err := sampler.Run(context.Background(), g, cfg); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// previewPipeline is flatPipeline with a preview decoder that paints every pixel 0.25, counting
// the calls of both decoders.
type previewPipeline struct {
	flatPipeline
	decodes, previews *int
}

func (p previewPipeline) Decode(ctx context.Context, st *pipelines.Stats, x []float32, n int, dst pixels.Images) error {
	*p.decodes++
	return p.flatPipeline.Decode(ctx, st, x, n, dst)
}

func (p previewPipeline) Preview(_ context.Context, _ *pipelines.Stats, _ []float32, n int, dst pixels.Images) error {
	*p.previews++
	for i := range dst.Pix[:n*dst.Len()] {
		dst.Pix[i] = 0.25
	}
	return nil
}

// TestPreviewDecodesIntermediateRewards: an FK run of 8 steps evaluating at steps 2, 4 and 6
// decodes those three x0 predictions with Preview (what observers see) and the final samples
// once with Decode; a run without steering never previews.
func TestPreviewDecodesIntermediateRewards(t *testing.T) {
	var decodes, previews int
	p := previewPipeline{decodes: &decodes, previews: &previews}
	var _ pipelines.Previewer = p
	var seen int
	res, err := sampler.Run(context.Background(), p, sampler.Config{
		Steps: 8, Rule: schedule.LCMRule, Images: 2, Particles: 3, Seed: 3,
		Method: sampler.FK, Reward: slotReward{k: 3, score: func(k int) float64 { return float64(k) }},
		Potential: potentials.Diff, Lambda: potentials.Lambda{Value: 1},
		Resampling: potentials.Schedule{Every: 2, Start: 2, End: 6}, Resampler: particles.Systematic,
		Observer: func(si sampler.StepInfo) {
			if si.Evaluated {
				seen++
				if si.Images.Pix[0] != 0.25 {
					t.Errorf("step %d: observer sees %v, not the preview", si.Step, si.Images.Pix[0])
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if previews != 3 || decodes != 1 || seen != 3 {
		t.Errorf("%d previews, %d decodes, %d evaluations observed; want 3, 1, 3", previews, decodes, seen)
	}
	for i, v := range res.All.Pix {
		if v == 0.25 {
			t.Fatalf("final image value %d is the preview's", i)
		}
	}
	decodes, previews = 0, 0
	if _, err := sampler.Run(context.Background(), p, sampler.Config{Steps: 8, Rule: schedule.DDIMRule, Images: 1, Particles: 2}); err != nil {
		t.Fatal(err)
	}
	if previews != 0 || decodes != 1 {
		t.Errorf("unsteered run: %d previews, %d decodes; want 0 and 1", previews, decodes)
	}
}

// TestNewRulesStepLoopDoesNotAllocate: the model-free Gaussian pipeline allocates nothing, so
// runs of 10 and 30 steps must allocate exactly as much: dpm++2m's memory and lcm's steps (with
// FK steering) add nothing per step.
func TestNewRulesStepLoopDoesNotAllocate(t *testing.T) {
	g := newGauss(16, 0.5, false)
	for _, cfg := range []sampler.Config{
		{Rule: schedule.DPMpp2MRule, Images: 2, Particles: 4, Seed: 1},
		{Rule: schedule.DPMpp2MRule, Images: 2, Particles: 4, Seed: 1, Init: g.mu, Strength: 0.8},
		{Rule: schedule.LCMRule, Images: 2, Particles: 4, Seed: 1, Method: sampler.FK,
			Reward: slotReward{k: 4, score: func(k int) float64 { return float64(k) }}, Potential: potentials.Diff,
			Lambda: potentials.Lambda{Value: 1}, Resampling: potentials.Schedule{Every: 2, Start: 2, End: 6}},
	} {
		allocs := func(steps int) float64 {
			cfg.Steps = steps
			return testing.AllocsPerRun(5, func() {
				if _, err := sampler.Run(context.Background(), g, cfg); err != nil {
					t.Fatal(err)
				}
			})
		}
		if short, long := allocs(10), allocs(30); long != short {
			t.Errorf("%s (init %v): %.0f allocations for 10 steps, %.0f for 30", cfg.Rule, cfg.Init != nil, short, long)
		}
	}
}
