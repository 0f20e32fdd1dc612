package pipelines

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fksteer/fksteer/schedule"
)

// TestToX0EpsInvertsEveryPrediction builds x = Alpha*x0 + Sigma*eps from known x0 and eps, forms
// each prediction type from its definition, and checks that ToX0Eps recovers x0 and eps.
func TestToX0EpsInvertsEveryPrediction(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	levels := []schedule.Level{
		{Alpha: math.Sqrt(0.3), Sigma: math.Sqrt(0.7)}, // VP
		{Alpha: 0.25, Sigma: 0.75},                     // flow, t = 0.75
		{Alpha: 0.9, Sigma: 0.1},                       // flow, t = 0.1
	}
	for _, l := range levels {
		n := 64
		x0, eps, x := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range n {
			x0[i], eps[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			x[i] = float32(l.Alpha*float64(x0[i]) + l.Sigma*float64(eps[i]))
		}
		outputs := map[Prediction]func(i int) float64{
			PredictEpsilon: func(i int) float64 { return float64(eps[i]) },
			PredictX0:      func(i int) float64 { return float64(x0[i]) },
			PredictV:       func(i int) float64 { return l.Alpha*float64(eps[i]) - l.Sigma*float64(x0[i]) },
			PredictFlow:    func(i int) float64 { return float64(eps[i]) - float64(x0[i]) },
		}
		for p, f := range outputs {
			out := make([]float32, n)
			for i := range out {
				out[i] = float32(f(i))
			}
			gx0, geps := make([]float32, n), make([]float32, n)
			ToX0Eps(p, l, x, out, gx0, geps)
			for i := range n {
				if math.Abs(float64(gx0[i]-x0[i])) > 1e-4 || math.Abs(float64(geps[i]-eps[i])) > 1e-4 {
					t.Fatalf("%s at %+v: element %d: got (%g, %g), want (%g, %g)", p, l, i, gx0[i], geps[i], x0[i], eps[i])
				}
			}
		}
	}
}

// TestFlowConversionMatchesDesign checks the flow case against DESIGN.md's formulas written out:
// x0 = x - t v, noise = x + (1-t) v.
func TestFlowConversionMatchesDesign(t *testing.T) {
	tt := 0.35
	l := schedule.Level{Alpha: 1 - tt, Sigma: tt}
	x, v := []float32{0.5, -1.25}, []float32{2, 0.75}
	x0, eps := make([]float32, 2), make([]float32, 2)
	ToX0Eps(PredictFlow, l, x, v, x0, eps)
	for i := range x {
		wantX0 := float64(x[i]) - tt*float64(v[i])
		wantEps := float64(x[i]) + (1-tt)*float64(v[i])
		if math.Abs(float64(x0[i])-wantX0) > 1e-6 || math.Abs(float64(eps[i])-wantEps) > 1e-6 {
			t.Errorf("element %d: (%g, %g), want (%g, %g)", i, x0[i], eps[i], wantX0, wantEps)
		}
	}
}

func TestCombineGuidance(t *testing.T) {
	out := []float32{1, 2, 3, 5} // u = [1, 2], c = [3, 5]
	dst := make([]float32, 2)
	CombineGuidance(dst, out, 2.5)
	if dst[0] != 1+2.5*2 || dst[1] != 2+2.5*3 {
		t.Errorf("guided = %v, want [6 9.5]", dst)
	}
}

func TestClassFromPrompt(t *testing.T) {
	classes := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	three := int64(3)
	for _, c := range []struct {
		prompt   string
		override *int64
		want     int64
		fails    bool
	}{
		{"a handwritten 7", nil, 7, false},
		{"7", nil, 7, false},
		{"", nil, 10, false},
		{"   ", nil, 10, false},
		{"a 7 and an 8", nil, 0, true},
		{"a seven", nil, 0, true},
		{"whatever", &three, 3, false},
	} {
		got, err := classFromPrompt(c.prompt, classes, 10, c.override)
		if (err != nil) != c.fails || (!c.fails && got != c.want) {
			t.Errorf("classFromPrompt(%q) = %d, %v; want %d (fails %v)", c.prompt, got, err, c.want, c.fails)
		}
	}
	bad := int64(12)
	if _, err := classFromPrompt("", classes, 10, &bad); err == nil {
		t.Error("an out-of-range --class was accepted")
	}
}
