package particles_test

import (
	"math"
	"testing"

	"github.com/fksteer/fksteer/particles"
)

var (
	inf  = math.Inf(1)
	ninf = math.Inf(-1)
	nan  = math.NaN()
)

// closeTo compares with an absolute tolerance; infinities must match exactly.
func closeTo(got, want, tol float64) bool {
	if math.IsInf(want, 0) || math.IsNaN(want) {
		return got == want || (math.IsNaN(got) && math.IsNaN(want))
	}
	return math.Abs(got-want) <= tol
}

func TestLogSumExp(t *testing.T) {
	ln2 := math.Ln2
	for _, tc := range []struct {
		name string
		xs   []float64
		want float64
	}{
		{"empty", nil, ninf},
		{"all -Inf", []float64{ninf, ninf}, ninf},
		{"only NaN", []float64{nan}, ninf},
		{"single", []float64{-3.5}, -3.5},
		{"two zeros", []float64{0, 0}, ln2},
		{"1, 2, 3", []float64{0, math.Log(2), math.Log(3)}, math.Log(6)},
		{"huge equal", []float64{1000, 1000}, 1000 + ln2},
		{"tiny equal", []float64{-1000, -1000}, -1000 + ln2},
		{"huge and tiny", []float64{1000, -1000}, 1000},
		{"huge pair", []float64{1000, 1000 + math.Log(3)}, 1000 + math.Log(4)},
		{"-Inf and NaN ignored", []float64{0, ninf, nan, 0}, ln2},
		{"+Inf wins", []float64{+inf, 0, nan}, inf},
	} {
		// 1e-12 absolute: a few ulps of 1000.
		if got := particles.LogSumExp(tc.xs); !closeTo(got, tc.want, 1e-12) {
			t.Errorf("%s: LogSumExp(%v) = %v, want %v", tc.name, tc.xs, got, tc.want)
		}
	}
}

func TestESS(t *testing.T) {
	for _, tc := range []struct {
		name string
		logw []float64
		want float64
	}{
		{"empty", nil, 0},
		{"all -Inf", []float64{ninf, ninf, ninf}, 0},
		{"all NaN", []float64{nan, nan}, 0},
		{"uniform", []float64{0, 0, 0, 0}, 4},
		{"uniform huge", []float64{1000, 1000, 1000, 1000}, 4},
		{"uniform tiny", []float64{-1000, -1000, -1000}, 3},
		{"one-hot", []float64{0, ninf, ninf, ninf}, 1},
		{"one-hot with NaN", []float64{nan, 5, ninf}, 1},
		// w = 1, 1, 2: (1+1+2)^2 / (1+1+4) = 16/6.
		{"1 1 2", []float64{0, 0, math.Ln2}, 16.0 / 6},
		{"1 1 2 huge", []float64{1000, 1000, 1000 + math.Ln2}, 16.0 / 6},
		{"1 1 2 tiny", []float64{-1000, -1000, -1000 + math.Ln2}, 16.0 / 6},
		// exp(-2000) relative to exp(0) underflows: effectively one-hot.
		{"huge and tiny", []float64{1000, -1000}, 1},
		{"NaN is zero", []float64{0, nan, 0}, 2},
		{"+Inf entries share", []float64{inf, inf, 0}, 2},
	} {
		if got := particles.ESS(tc.logw); !closeTo(got, tc.want, 1e-12) {
			t.Errorf("%s: ESS(%v) = %v, want %v", tc.name, tc.logw, got, tc.want)
		}
	}
}

func TestNormalizedWeights(t *testing.T) {
	for _, tc := range []struct {
		name string
		logw []float64
		want []float64
	}{
		{"1 3", []float64{0, math.Log(3)}, []float64{0.25, 0.75}},
		{"1 3 huge", []float64{1000, 1000 + math.Log(3)}, []float64{0.25, 0.75}},
		{"1 3 tiny", []float64{-1000, -1000 + math.Log(3)}, []float64{0.25, 0.75}},
		{"zeros", []float64{ninf, nan, 0, 0}, []float64{0, 0, 0.5, 0.5}},
		{"all zero", []float64{ninf, nan}, []float64{0, 0}},
		{"+Inf", []float64{inf, 7, inf}, []float64{0.5, 0, 0.5}},
	} {
		got := make([]float64, len(tc.logw))
		particles.NormalizedWeights(got, tc.logw)
		for i := range got {
			// 1e-12: 1000+log(3) itself is only exact to ~1e-13.
			if !closeTo(got[i], tc.want[i], 1e-12) {
				t.Errorf("%s: NormalizedWeights(%v) = %v, want %v", tc.name, tc.logw, got, tc.want)
				break
			}
		}
	}

	// In place.
	w := []float64{0, math.Log(3)}
	particles.NormalizedWeights(w, w)
	if !closeTo(w[0], 0.25, 1e-15) || !closeTo(w[1], 0.75, 1e-15) {
		t.Errorf("in place: got %v, want [0.25 0.75]", w)
	}

	defer func() {
		if recover() == nil {
			t.Error("NormalizedWeights with mismatched lengths did not panic")
		}
	}()
	particles.NormalizedWeights(make([]float64, 1), make([]float64, 2))
}
