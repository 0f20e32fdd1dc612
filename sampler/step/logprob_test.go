package step

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestLogProbHandMade(t *testing.T) {
	// x = (1, 2), mean = 0, std = 2: the squared terms are 1/8 and 4/8, averaging 0.3125, so
	// LogProb = -0.3125 - log 2 - log sqrt(2 pi) = -0.3125 - 0.69314718055994531 - 0.91893853320467274.
	const want = -1.92458571376461805
	if got := LogProb([]float32{1, 2}, []float32{0, 0}, 2); math.Abs(got-want) > 1e-14 {
		t.Errorf("LogProb = %.17g, want %.17g", got, want)
	}
}

func TestLogProbIsMeanOfDensities(t *testing.T) {
	r := rand.New(rand.NewPCG(30, 31))
	const std = 0.3
	x, mean := randSlice(r, 1000), randSlice(r, 1000)
	for i := range x {
		x[i] = mean[i] + float32(std*r.NormFloat64())
	}
	var sum float64 // log of each element's density, taken the long way round
	for i := range x {
		d := float64(x[i]) - float64(mean[i])
		sum += math.Log(math.Exp(-d*d/(2*std*std)) / (std * math.Sqrt(2*math.Pi)))
	}
	if got, want := LogProb(x, mean, std), sum/1000; math.Abs(got-want) > 1e-12 {
		t.Errorf("LogProb = %.15g, want the average density %.15g", got, want)
	}
	// For a draw from the step itself E[-z^2/2] = -1/2: the average sits near
	// -1/2 - log(std) - log sqrt(2 pi) (standard error sqrt(1/2)/sqrt(1000) = 0.022).
	if got, want := LogProb(x, mean, std), -0.5-math.Log(std)-0.5*math.Log(2*math.Pi); math.Abs(got-want) > 0.1 {
		t.Errorf("LogProb of a draw = %.4f, want about %.4f", got, want)
	}
}

func TestLogProbWithoutDensity(t *testing.T) {
	x := []float32{1, 2}
	for _, std := range []float64{0, -1, math.NaN()} {
		if got := LogProb(x, x, std); !math.IsNaN(got) {
			t.Errorf("LogProb with std %v = %v, want NaN", std, got)
		}
	}
	if got := LogProb(nil, nil, 1); !math.IsNaN(got) {
		t.Errorf("LogProb of no elements = %v, want NaN", got)
	}
}
