package sampler_test

import (
	"context"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// reportShares reports the run's split of wall time: the share outside ONNX Runtime's Run
// calls (model and reward) is the engine's own overhead.
func reportShares(b *testing.B, st sampler.Stats) {
	wall := st.Wall.Seconds()
	b.ReportMetric(100*st.EngineTime.Seconds()/wall, "%engine")
	b.ReportMetric(100*st.ModelTime.Seconds()/wall, "%model")
	if st.RewardCalls > 0 {
		b.ReportMetric(100*st.RewardTime.Seconds()/wall, "%reward")
	}
	b.ReportMetric(float64(st.ModelCalls), "model-calls")
}

// BenchmarkMNISTGenerate is the plain generation loop on the real MNIST DiT: 16 samples in one
// batch (32 rows with guidance), 50 Euler steps. %engine is the share of wall time spent outside
// ONNX Runtime's Run calls.
func BenchmarkMNISTGenerate(b *testing.B) {
	p := openMNIST(b)
	benchRuns(b, p, sampler.Config{Prompt: "3", Steps: 50, Guidance: 2, Rule: schedule.EulerRule, Images: 16, Particles: 1})
}

// benchRuns runs cfg once per iteration with a new seed and reports the last run's shares.
func benchRuns(b *testing.B, p pipelines.Pipeline, cfg sampler.Config) {
	b.ReportAllocs()
	var last sampler.Stats
	for i := 0; b.Loop(); i++ {
		cfg.Seed = uint64(i)
		res, err := sampler.Run(context.Background(), p, cfg)
		if err != nil {
			b.Fatal(err)
		}
		last = res.Stats
	}
	reportShares(b, last)
}

// BenchmarkMNISTFK is FK steering on the real MNIST DiT: K = 16 particles, unconditional, the
// stochastic flow step, 50 steps, potentials every 5 steps scored by the real MNIST classifier.
// %engine is the share outside the denoiser's and the reward's Run calls.
func BenchmarkMNISTFK(b *testing.B) {
	p := openMNIST(b)
	path := testenv.SharedFile(b, "models/mnist-cnn-classifier/mnist-8.onnx")
	r, err := rewards.NewClassifier(path, rewards.ClassifierOptions{Target: 3, Crop: 28, Mean: 0.5, Std: 0.5, Score: rewards.LogProb})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	benchRuns(b, p, sampler.Config{
		Prompt: "", Steps: 50, Rule: schedule.DDIMRule, Eta: 1, Images: 1, Particles: 16,
		Method: sampler.FK, Reward: r, Potential: potentials.Diff, Lambda: potentials.Lambda{Value: 10},
		Resampling: potentials.Schedule{Every: 5, Start: 5, End: 30}, Resampler: particles.Systematic,
	})
}
