package finetune_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pipelines/pipelinetest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// BenchmarkMNISTRecording measures what recording costs on the real MNIST DiT: one group of
// K = 16 samples of the digit 3, 50 steps of the stochastic flow step, guidance 2. Each iteration
// runs the plain run and the recorded run back to back, so that machine noise hits both alike,
// then turns the recorded run into a Group and writes it as a GRPO dataset, with float32 and with
// float16 latents.
//
// Wall time on a shared machine varies by more than recording costs, so the overhead is also
// measured where it happens: the recorder works inside the sampler's engine time (wall time
// minus the time inside ONNX Runtime), and the export's own work is timed alone.
//
// Metrics, per run: ms-plain and ms-record (wall); ms-rec-engine, the engine time recording adds;
// ms-export, NewGroups plus writing (shard, manifest, 16 PNGs, fsyncs); %record and %export, those
// costs relative to the plain run's wall time; B/sample and B/sample-f16, dataset bytes per
// sample (shard + manifest + groups file + image).
func BenchmarkMNISTRecording(b *testing.B) {
	p := pipelinetest.MNIST(b)
	ctx := context.Background()
	cfg := sampler.Config{Prompt: "3", Steps: 50, Guidance: 2, Rule: schedule.DDIMRule, Eta: 1, Images: 1, Particles: 16}
	var plain, record, engineOff, engineOn, export time.Duration
	var perSample, perSampleHalf float64
	for i := 0; b.Loop(); i++ {
		cfg.Seed = uint64(i)
		cfg.Record = false
		res, err := sampler.Run(ctx, p, cfg)
		if err != nil {
			b.Fatal(err)
		}
		plain += res.Stats.Wall
		engineOff += res.Stats.EngineTime

		cfg.Record = true
		if res, err = sampler.Run(ctx, p, cfg); err != nil {
			b.Fatal(err)
		}
		record += res.Stats.Wall
		engineOn += res.Stats.EngineTime

		for _, half := range []bool{false, true} {
			dir := filepath.Join(b.TempDir(), "ds")
			start := time.Now()
			groups, err := finetune.NewGroups(res, 0)
			if err != nil {
				b.Fatal(err)
			}
			w, err := finetune.OpenWriter(dir, finetune.WriterOptions{Mode: finetune.GRPO, Half: half})
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Add(groups[0]); err != nil {
				b.Fatal(err)
			}
			if err := w.Finish(); err != nil {
				b.Fatal(err)
			}
			size := float64(dirSize(b, dir)) / float64(cfg.Particles)
			if half {
				perSampleHalf = size
			} else {
				export += time.Since(start)
				perSample = size
			}
		}
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / n }
	recCost := ms(engineOn) - ms(engineOff)
	b.ReportMetric(ms(plain), "ms-plain")
	b.ReportMetric(ms(record), "ms-record")
	b.ReportMetric(recCost, "ms-rec-engine")
	b.ReportMetric(ms(export), "ms-export")
	b.ReportMetric(100*recCost/ms(plain), "%record")
	b.ReportMetric(100*(recCost+ms(export))/ms(plain), "%export")
	b.ReportMetric(perSample, "B/sample")
	b.ReportMetric(perSampleHalf, "B/sample-f16")
}

// dirSize is the total size of the files under dir.
func dirSize(tb testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		n += info.Size()
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// instant is a pipeline of the MNIST DiT's shape (1x32x32, rectified flow) whose denoiser costs
// next to nothing (x0 = x/2), so that a run's time is the sampler's own work and the cost of
// recording can be measured without the model's noise.
type instant struct{}

func (instant) Info() pipelines.Info {
	return pipelines.Info{Name: "instant", Channels: 1, Height: 32, Width: 32, ImageChannels: 1, ImageHeight: 32, ImageWidth: 32,
		Prediction: pipelines.PredictFlow, Conditioning: pipelines.Unconditioned}
}
func (instant) Schedule(steps int) ([]schedule.Level, error) { return schedule.Flow{}.Levels(steps) }
func (instant) Condition(context.Context, *pipelines.Stats, string, pipelines.CondOptions) (pipelines.Cond, error) {
	return pipelines.Cond{Kind: pipelines.Unconditioned}, nil
}
func (instant) Predict(_ context.Context, _ *pipelines.Stats, x []float32, _ int, lvl schedule.Level, _ pipelines.Cond, _ float64, x0, eps []float32) error {
	for i, v := range x {
		x0[i] = v / 2
		eps[i] = float32((float64(v) - lvl.Alpha*float64(x0[i])) / lvl.Sigma)
	}
	return nil
}
func (instant) Decode(_ context.Context, _ *pipelines.Stats, x []float32, _ int, dst pixels.Images) error {
	for i, v := range x {
		dst.Pix[i] = min(1, max(0, (v+1)/2))
	}
	return nil
}
func (instant) Stats() pipelines.Stats { return pipelines.Stats{} }
func (instant) Close() error           { return nil }

// BenchmarkRecordingCost is the sampler's own work for the MNIST benchmark's run (K = 16, 50
// steps, states of 1x32x32) with a denoiser that costs nothing, without and with recording: the
// difference is what recording costs, free of model-time noise. Divide it by the MNIST run's
// wall time (BenchmarkMNISTRecording's ms-plain) for the overhead.
func BenchmarkRecordingCost(b *testing.B) {
	for _, rec := range []bool{false, true} {
		b.Run(map[bool]string{false: "record=off", true: "record=on"}[rec], func(b *testing.B) {
			cfg := sampler.Config{Steps: 50, Rule: schedule.DDIMRule, Eta: 1, Images: 1, Particles: 16, Record: rec}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				cfg.Seed = uint64(i)
				if _, err := sampler.Run(context.Background(), instant{}, cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
