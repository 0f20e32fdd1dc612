package sd

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// BenchmarkSD15FK is FK steering of the synthetic SD 1.5 export at SD 1.5's real latent size
// (64x64 latents, 512x512 images) with K = 8 particles and guidance 7.5: 30 DDIM steps (eta 1),
// potentials every 3 steps, each decoding all 8 x0-predictions through the VAE for a colour
// reward. It reports the UNet calls per step and the rows of each (one call of 2K = 16), and
// the share of the wall time spent outside ONNX Runtime and the reward: fksteer's own work.
//
// The synthetic UNet (an exact Gaussian denoiser plus 4 convolutions of 64 channels) costs far
// less than a real one (~0.9 TFLOP per step at this size), so the share measured here is an
// upper bound on what a real export would show.
//
//	go test -run '^$' -bench SD15FK -benchtime 3x ./pipelines/sd/
func BenchmarkSD15FK(b *testing.B) {
	modeltest.Runtime(b)
	dir := filepath.Join(b.TempDir(), "sd15")
	if err := synth.WriteSD(dir, synth.SD15, synth.SDOptions{SampleSize: 64, Convs: 4}); err != nil {
		b.Fatal(err)
	}
	p, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	reward, err := rewards.Parse("color:target=#cc2222", rewards.Env{})
	if err != nil {
		b.Fatal(err)
	}
	defer reward.Close()
	const k, steps = 8, 30
	cfg := sampler.Config{
		Prompt: "a red apple", Steps: steps, Guidance: 7.5, Rule: schedule.DDIMRule, Eta: 1,
		Seed: 1, Images: 1, Particles: k, Method: sampler.FK, Reward: reward,
		Potential: potentials.Diff, Lambda: potentials.Lambda{Value: 10},
		Resampling: potentials.Schedule{Every: 3, Start: 3, End: 21},
	}
	var st sampler.Stats
	b.ResetTimer()
	for b.Loop() {
		res, err := sampler.Run(context.Background(), p, cfg)
		if err != nil {
			b.Fatal(err)
		}
		st.Wall += res.Stats.Wall
		st.ModelTime += res.Stats.ModelTime
		st.AuxTime += res.Stats.AuxTime
		st.RewardTime += res.Stats.RewardTime
		st.EngineTime += res.Stats.EngineTime
		st.ModelCalls += res.Stats.ModelCalls
		st.Steps += res.Stats.Steps
	}
	b.StopTimer()
	rows := slices.Collect(maps.Keys(p.unet.guided.Calls.Idle()))
	if len(rows) != 1 || rows[0] != 2*k {
		b.Fatalf("UNet calls were prepared for %v rows, want only %d", rows, 2*k)
	}
	wall := st.Wall.Seconds()
	b.ReportMetric(float64(st.ModelCalls)/float64(st.Steps), "unet-calls/step")
	b.ReportMetric(float64(rows[0]), "rows/call")
	b.ReportMetric(100*st.ModelTime.Seconds()/wall, "%unet")
	b.ReportMetric(100*st.AuxTime.Seconds()/wall, "%vae+text")
	b.ReportMetric(100*st.RewardTime.Seconds()/wall, "%reward")
	b.ReportMetric(100*st.EngineTime.Seconds()/wall, "%outside-ort")
	b.ReportMetric(1000*st.EngineTime.Seconds()/float64(st.Steps), "outside-ms/step")
}
