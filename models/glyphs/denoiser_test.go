package glyphs_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/fksteer/fksteer/models/glyphs"
	"github.com/fksteer/fksteer/models/modeltest"
)

// denoiser is an ONNX Runtime session of the glyphs model for tests.
type denoiser struct {
	s *ort.DynamicAdvancedSession
	m int64
}

func newDenoiser(t testing.TB, d *glyphs.Dataset) *denoiser {
	t.Helper()
	model, err := glyphs.BuildDenoiser(d)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model,
		[]string{glyphs.InputX, glyphs.InputT, glyphs.InputPrior}, []string{glyphs.OutputX0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Destroy() })
	return &denoiser{s, int64(d.Len())}
}

// run denoises a batch: x [B, 3, 32, 32], t [B], prior [B, M].
func (dn *denoiser) run(t testing.TB, x, ts, prior []float32) []float32 {
	t.Helper()
	b := int64(len(ts))
	shape := ort.NewShape(b, glyphs.Channels, glyphs.Side, glyphs.Side)
	var vals []ort.Value
	defer func() {
		for _, v := range vals {
			v.Destroy()
		}
	}()
	for _, in := range []struct {
		shape ort.Shape
		data  []float32
	}{{shape, x}, {ort.NewShape(b), ts}, {ort.NewShape(b, dn.m), prior}} {
		v, err := ort.NewTensor(in.shape, in.data)
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, v)
	}
	out, err := ort.NewEmptyTensor[float32](shape)
	if err != nil {
		t.Fatal(err)
	}
	vals = append(vals, out)
	if err := dn.s.Run(vals[:3], vals[3:]); err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out.GetData()...)
}

// TestDenoiserMatchesReference runs one batch whose rows each have their own t, prior and kind
// of input, and compares the ONNX output with the float64 Go reference. The kinds: pure noise
// (weights spread widely at large t), an image noised to t (the states a sampler visits), and the
// point halfway between two allowed images (a tie down to small t, where rounding in the logits
// shows most: a float32 graph was off by 3e-3 there).
func TestDenoiserMatchesReference(t *testing.T) {
	modeltest.Runtime(t)
	d := load(t)
	dn := newDenoiser(t, d)
	prompts := []string{"", `a red "A" on black`, "the word cat", "on navy", `"7" in yellow`, "blue"}
	times := []float32{1, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3, 0.2, 0.1, 0.02, 1e-3, 0}
	kinds := []string{"noise", "noised image", "tie"}
	rng := rand.New(rand.NewPCG(1, 2))

	type row struct {
		t      float32
		kind   string
		prompt string
	}
	var (
		rows         []row
		x, ts, prior []float32
	)
	for i, tv := range times {
		for j, kind := range kinds {
			prompt := prompts[(i*len(kinds)+j)%len(prompts)]
			s := d.Match(prompt)
			var allowed []int
			for m, on := range s.Mask {
				if on {
					allowed = append(allowed, m)
				}
			}
			ia := allowed[rng.IntN(len(allowed))]
			ib := allowed[(slices.Index(allowed, ia)+1)%len(allowed)] // another image, if allowed
			a, b := d.Image(ia), d.Image(ib)
			xr := make([]float32, glyphs.ImageLen)
			for k := range xr {
				eps := float32(rng.NormFloat64())
				switch kind {
				case "noise":
					xr[k] = eps
				case "noised image":
					xr[k] = (1-tv)*a[k] + tv*eps
				case "tie":
					xr[k] = (1 - tv) * (a[k] + b[k]) / 2
				}
			}
			rows = append(rows, row{tv, kind, prompt})
			x, ts, prior = append(x, xr...), append(ts, tv), append(prior, s.LogPrior()...)
		}
	}
	got := dn.run(t, x, ts, prior)

	var worst float64
	for r, rw := range rows {
		xr := x[r*glyphs.ImageLen : (r+1)*glyphs.ImageLen]
		lp := prior[r*d.Len() : (r+1)*d.Len()]
		want := glyphs.PosteriorMean(d, xr, float64(rw.t), lp)
		var e float64
		for k, w := range want {
			g := got[r*glyphs.ImageLen+k]
			if math.IsNaN(float64(g)) {
				t.Fatalf("row %d %+v: NaN output", r, rw)
			}
			e = max(e, math.Abs(float64(g)-float64(w)))
		}
		if testing.Verbose() {
			w := glyphs.PosteriorWeights(d, xr, float64(rw.t), lp)
			var s2 float64
			for _, v := range w {
				s2 += v * v
			}
			t.Logf("t=%-5v %-12s %-20q effective images %6.1f  max |onnx-go| %.3g", rw.t, rw.kind, rw.prompt, 1/s2, e)
		}
		// The graph computes in float64 and rounds once to float32, so it agrees to float32
		// rounding; 1e-6 leaves room for a different BLAS, far inside the required 1e-4.
		if e > 1e-6 {
			t.Errorf("t=%v %s %q: max abs error %.3g > 1e-6", rw.t, rw.kind, rw.prompt, e)
		}
		worst = max(worst, e)
	}
	t.Logf("max |onnx - go| over %d rows: %.3g", len(rows), worst)
}

func TestDenoiserSignature(t *testing.T) {
	modeltest.Runtime(t)
	d := load(t)
	model, err := glyphs.BuildDenoiser(d)
	if err != nil {
		t.Fatal(err)
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(ins, outs)
	want := fmt.Sprint(
		[]ort.InputOutputInfo{
			{Name: "x", OrtValueType: ort.ONNXTypeTensor, Dimensions: ort.NewShape(-1, 3, 32, 32), DataType: ort.TensorElementDataTypeFloat},
			{Name: "t", OrtValueType: ort.ONNXTypeTensor, Dimensions: ort.NewShape(-1), DataType: ort.TensorElementDataTypeFloat},
			{Name: "prior", OrtValueType: ort.ONNXTypeTensor, Dimensions: ort.NewShape(-1, int64(d.Len())), DataType: ort.TensorElementDataTypeFloat},
		},
		[]ort.InputOutputInfo{
			{Name: "x0", OrtValueType: ort.ONNXTypeTensor, Dimensions: ort.NewShape(-1, 3, 32, 32), DataType: ort.TensorElementDataTypeFloat},
		})
	if got != want {
		t.Errorf("signature\n got %s\nwant %s", got, want)
	}
}

func TestBuildDenoiserDeterministic(t *testing.T) {
	d := load(t)
	a, err := glyphs.BuildDenoiser(d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := glyphs.BuildDenoiser(d)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two builds of the denoiser differ")
	}
}

// BenchmarkDenoiser times one call on a batch of 8, the default particle count with guidance off.
func BenchmarkDenoiser(b *testing.B) {
	modeltest.Runtime(b)
	d := load(b)
	dn := newDenoiser(b, d)
	const batch = 8
	x := make([]float32, batch*glyphs.ImageLen)
	ts := make([]float32, batch)
	for i := range ts {
		ts[i] = 0.5
	}
	prior := make([]float32, batch*d.Len())
	for b.Loop() {
		dn.run(b, x, ts, prior)
	}
}
