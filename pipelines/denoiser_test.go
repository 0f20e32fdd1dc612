package pipelines_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/onnxgraph"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/schedule"
)

// echoModel is a class-conditional "denoiser" whose output is t + 10*cond at every element, so a
// test can see exactly which time and class each row was given. timeDims selects the time input's
// layout (nil: a scalar); sampleType the element type of sample and output.
func echoModel(t *testing.T, timeType onnxgraph.ElemType, timeDims []onnxgraph.Dim, sampleType onnxgraph.ElemType) string {
	t.Helper()
	g := onnxgraph.New("echo", 17)
	b := onnxgraph.Sym("batch")
	x := g.Input("sample", sampleType, b, onnxgraph.Fixed(1), onnxgraph.Fixed(2), onnxgraph.Fixed(2))
	tm := g.Input("timestep", timeType, timeDims...)
	c := g.Input("class", onnxgraph.Int64, b)
	f32 := func(v string) string {
		return g.Op("Cast", []string{v}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))
	}
	tcol := f32(tm)
	if len(timeDims) > 0 {
		tcol = g.Op("Reshape", []string{tcol, g.Int64s(-1, 1, 1, 1)})
	}
	ccol := g.Op("Reshape", []string{f32(c), g.Int64s(-1, 1, 1, 1)})
	sum := g.Op("Add", []string{
		g.Op("Mul", []string{f32(x), g.Scalar(0)}),
		g.Op("Add", []string{tcol, g.Op("Mul", []string{ccol, g.Scalar(10)})}),
	})
	g.Node("Cast", []string{sum}, []string{"out"}, onnxgraph.AttrInt("to", int64(sampleType)))
	g.Output("out", sampleType, b, onnxgraph.Fixed(1), onnxgraph.Fixed(2), onnxgraph.Fixed(2))
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "echo.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const echoManifest = `
model: %s
inputs: {sample: sample, time: timestep, cond: class}
output: out
prediction: x0
sample: {shape: [1, 2, 2]}
time: {kind: %s}
conditioning: {kind: class, classes: ["0","1","2","3","4","5","6","7","8"], null_class: 9}
`

func openEcho(t *testing.T, model, timeKind string) *pipelines.Denoiser {
	t.Helper()
	m, err := pipelines.ParseManifest([]byte(fmt.Sprintf(echoManifest, model, timeKind)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := pipelines.NewDenoiser(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestDenoiserFeedsEveryTimeLayout runs the echo model with the time input as float [batch],
// int64 [1] and a float scalar, and float16 samples, with and without guidance.
func TestDenoiserFeedsEveryTimeLayout(t *testing.T) {
	modeltest.Runtime(t)
	b := onnxgraph.Sym("batch")
	cases := []struct {
		name       string
		timeType   onnxgraph.ElemType
		dims       []onnxgraph.Dim
		sampleType onnxgraph.ElemType
		kind       string
		time       float64
	}{
		{"float32 [batch]", onnxgraph.Float32, []onnxgraph.Dim{b}, onnxgraph.Float32, "continuous", 0.25},
		{"int64 [1]", onnxgraph.Int64, []onnxgraph.Dim{onnxgraph.Fixed(1)}, onnxgraph.Float32, "discrete", 981},
		{"float32 scalar", onnxgraph.Float32, nil, onnxgraph.Float32, "continuous", 0.5},
		{"float16 sample", onnxgraph.Float16, []onnxgraph.Dim{b}, onnxgraph.Float16, "continuous", 0.25},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := openEcho(t, echoModel(t, c.timeType, c.dims, c.sampleType), c.kind)
			cond, err := d.Condition(context.Background(), nil, "a 3", pipelines.CondOptions{})
			if err != nil {
				t.Fatal(err)
			}
			lvl := schedule.Level{Time: c.time, Alpha: 0.5, Sigma: 0.5}
			x := make([]float32, 2*4)
			x0, eps := make([]float32, 8), make([]float32, 8)
			var run pipelines.Stats // the run's own figures, passed to Predict
			for _, g := range []float64{1, 2} {
				if err := d.Predict(context.Background(), &run, x, 2, lvl, cond, g, x0, eps); err != nil {
					t.Fatal(err)
				}
				// Guidance 2 mixes the null class 9 and class 3: 9 + 2*(3-9) = -3.
				want := c.time + 10*3
				if g == 2 {
					want = c.time + 10*(9+2*(3-9))
				}
				for i, v := range x0 {
					if diff := float64(v) - want; diff > 0.02 || diff < -0.02 {
						t.Fatalf("guidance %g: x0[%d] = %g, want %g", g, i, v, want)
					}
				}
			}
			if st := d.Stats(); st.ModelCalls != 2 {
				t.Errorf("%d model calls, want 2 (guidance must be one doubled batch)", st.ModelCalls)
			}
			if total := d.Stats(); run.ModelCalls != 2 || run.ModelTime != total.ModelTime || run.AuxCalls != 0 {
				t.Errorf("the run's Stats %+v, want the pipeline's %+v (the only run)", run, total)
			}
		})
	}
}

func TestManifestErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"model: m.onnx\npredicton: x0\n", `unknown key "predicton" (did you mean "prediction"?)`},
		{"model: m.onnx\ninputs: {sampel: x}\n", `unknown key "inputs.sampel" (did you mean "sample"?)`},
		{"model: m.onnx\ninputs: {sample: x, time: t}\noutput: y\nprediction: noise\nsample: {shape: [1, 2, 2]}\ntime: {kind: continuous}\n", "unknown prediction"},
		{"model: m.onnx\ninputs: {sample: x, time: t}\noutput: y\nprediction: x0\nsample: {shape: [1, 2]}\ntime: {kind: continuous}\n", "sample.shape"},
		{"model: m.onnx\ninputs: {sample: x, time: t}\noutput: y\nprediction: x0\nsample: {shape: [1, 2, 2]}\ntime: {kind: sometimes}\n", "time.kind"},
		{"model: m.onnx\ninputs: {sample: x, time: t, cond: c}\noutput: y\nprediction: x0\nsample: {shape: [1, 2, 2]}\ntime: {kind: continuous}\nconditioning: {kind: class, classes: [a]}\n", "null_class"},
		{"model: m.onnx\ninputs: {sample: x, time: t}\noutput: y\nprediction: epsilon\nsample: {shape: [4, 8, 8]}\ntime: {kind: discrete, beta_schedule: quadratic}\n", "beta"},
		{"model: [unclosed\n", "not valid YAML"},
	} {
		_, err := pipelines.ParseManifest([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("manifest %q: error %v, want one mentioning %q", c.yaml, err, c.want)
		}
	}
}

// TestDiscreteSchedule: a discrete-time manifest that sets nothing else gets Stable Diffusion
// 1.5's schedule: 50 leading steps are 981, 961, ..., 1, and the model sees them as integers.
func TestDiscreteSchedule(t *testing.T) {
	modeltest.Runtime(t)
	d := openEcho(t, echoModel(t, onnxgraph.Int64, []onnxgraph.Dim{onnxgraph.Fixed(1)}, onnxgraph.Float32), "discrete")
	levels, err := d.Schedule(50)
	if err != nil {
		t.Fatal(err)
	}
	if len(levels) != 51 || levels[0].Time != 981 || levels[1].Time != 961 || levels[49].Time != 1 {
		t.Fatalf("times %v ... %v, want 981, 961, ..., 1", levels[0].Time, levels[49].Time)
	}
	// abar[981] from the scaled_linear betas, computed independently here.
	abar := 1.0
	for i := 0; i <= 981; i++ {
		b := math.Sqrt(0.00085) + (math.Sqrt(0.012)-math.Sqrt(0.00085))*float64(i)/999
		abar *= 1 - b*b
	}
	if math.Abs(levels[0].Alpha-math.Sqrt(abar)) > 1e-12 {
		t.Errorf("Alpha at 981 = %g, want %g", levels[0].Alpha, math.Sqrt(abar))
	}
	if _, err := d.Schedule(0); err == nil {
		t.Error("0 steps accepted")
	}
}

// TestConcurrentPredicts drives one Denoiser from several goroutines, as batch workers do, each
// with its own Stats (run it with -race): every prediction is what it is alone, guided or not,
// and each run's Stats counts its own calls only.
func TestConcurrentPredicts(t *testing.T) {
	b := onnxgraph.Sym("batch")
	d := openEcho(t, echoModel(t, onnxgraph.Float32, []onnxgraph.Dim{b}, onnxgraph.Float32), "continuous")
	cond, err := d.Condition(context.Background(), nil, "a 3", pipelines.CondOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, calls = 6, 20
	var wg sync.WaitGroup
	for w := range goroutines {
		wg.Go(func() {
			var run pipelines.Stats
			n, guidance := 1+w%3, float64(1+w%2) // 1 to 3 states; guided or not
			lvl := schedule.Level{Time: float64(w) / 8, Alpha: 0.5, Sigma: 0.5}
			want := lvl.Time + 10*3
			if guidance == 2 {
				want = lvl.Time + 10*(9+2*(3-9))
			}
			x, x0, eps := make([]float32, 4*n), make([]float32, 4*n), make([]float32, 4*n)
			for range calls {
				if err := d.Predict(context.Background(), &run, x, n, lvl, cond, guidance, x0, eps); err != nil {
					t.Error(err)
					return
				}
				for i, v := range x0 {
					if math.Abs(float64(v)-want) > 0.02 {
						t.Errorf("goroutine %d: x0[%d] = %g, want %g", w, i, v, want)
						return
					}
				}
			}
			if run.ModelCalls != calls {
				t.Errorf("goroutine %d counted %d calls, want its own %d", w, run.ModelCalls, calls)
			}
		})
	}
	wg.Wait()
	if st := d.Stats(); st.ModelCalls != goroutines*calls {
		t.Errorf("the pipeline counted %d calls, want %d", st.ModelCalls, goroutines*calls)
	}
}
