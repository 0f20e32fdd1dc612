package bench_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/bench"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines/pipelinetest"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

func TestScratchMethods(t *testing.T) {
	p := pipelinetest.MNIST(t)
	dir := filepath.Dir(testenv.SharedFile(t, "models/mnist-cnn-classifier/t10k-labels-idx1-ubyte"))
	reader, _ := bench.LoadReader(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), filepath.Join(dir, "t10k-labels-idx1-ubyte"), 5)
	mult := 4
	var specs []string
	if s := os.Getenv("SCRATCH"); s != "" {
		specs = strings.Split(s, ";")
	}
	for _, spec := range specs {
		f := strings.Split(spec, ":")
		m := sampler.Method(f[0])
		for _, d := range []int{3, 8} {
			clf, _ := rewards.NewClassifier(filepath.Join(dir, "mnist-8.onnx"), rewards.ClassifierOptions{Target: d, Crop: 28, Mean: 0.5, Std: 0.5, Score: rewards.LogProb})
			cfg := sampler.Config{Steps: 50, Rule: schedule.DDIMRule, Eta: 1, Seed: 11 + uint64(d)*1000, Images: 32, Method: m, Reward: clf,
				Search: sampler.Search{Budget: mult * 50}, Potential: potentials.Diff, Lambda: potentials.Lambda{Value: 10}, Resampler: particles.Systematic,
				Resampling: potentials.Schedule{Every: 2, Start: 2, End: 46}}
			for _, kv := range f[1:] {
				var v float64
				var k string
				fmt.Sscanf(strings.Replace(kv, "=", " ", 1), "%s %g", &k, &v)
				switch k {
				case "lambda":
					cfg.Lambda.Value = v
				case "alpha":
					cfg.Search.Alpha = v
				case "c":
					cfg.Search.Candidates = int(v)
				case "every":
					cfg.Search.Every = int(v)
				case "k":
					cfg.Particles = int(v)
				case "pot":
					cfg.Potential = []potentials.Kind{potentials.Diff, potentials.Max, potentials.Sum, potentials.Immediate}[int(v)]
				case "rs":
					cfg.Resampling.Every = int(v)
				case "eta":
					cfg.Eta = v
				}
			}
			if m == sampler.Noise || m == sampler.Random {
				cfg.Rule, cfg.Eta = schedule.EulerRule, 0
			}
			res, err := sampler.Run(context.Background(), p, cfg)
			if err != nil {
				t.Fatal(err)
			}
			top := make([]int, res.Images.N)
			clf.TopClass(context.Background(), res.Images, top)
			read, _ := reader.Read(context.Background(), res.Images)
			c, r := 0, 0
			for i := range top {
				if top[i] == d {
					c++
				}
				if read[i] == d {
					r++
				}
			}
			t.Logf("%-30s digit %d: clf %2d/32 reader %2d/32  NFE/img %d wall %.1fs", spec, d, c, r, res.Stats.NFE/32, res.Stats.Wall.Seconds())
		}
	}
}
