package schedule

import (
	"math"
	"testing"
)

func TestDiscreteLevelsSD(t *testing.T) {
	levels, err := DefaultSD().Levels(50)
	if err != nil {
		t.Fatal(err)
	}
	if len(levels) != 51 {
		t.Fatalf("len = %d, want 51", len(levels))
	}
	for i, l := range levels {
		if v := l.Alpha*l.Alpha + l.Sigma*l.Sigma; math.Abs(v-1) > floatEquality {
			t.Errorf("level %d: Alpha^2 + Sigma^2 = %v, want 1 (variance preserving)", i, v)
		}
		if i < 50 {
			if want := float64(981 - 20*i); l.Time != want {
				t.Errorf("level %d: Time = %v, want %v", i, l.Time, want)
			}
		}
	}
	if a2 := levels[0].Alpha * levels[0].Alpha; math.Abs(a2-sdAbar981) > floatEquality {
		t.Errorf("first level Alpha^2 = %.15g, want abar[981] = %.15g", a2, sdAbar981)
	}
	last := levels[50]
	if last.Time != -1 || math.Abs(last.Alpha*last.Alpha-0.99915) > floatEquality || last.Clean() {
		t.Errorf("final level = %+v, want Time -1 and abar[0] = 0.99915 (set_alpha_to_one false)", last)
	}

	d := DefaultSD()
	d.SetAlphaToOne = true
	levels, err = d.Levels(50)
	if err != nil {
		t.Fatal(err)
	}
	if last := levels[50]; last != (Level{Time: -1, Alpha: 1, Sigma: 0}) || !last.Clean() {
		t.Errorf("final level with set_alpha_to_one = %+v, want clean data", last)
	}
}

func TestDiscreteLevelsErrors(t *testing.T) {
	bad := DefaultSD()
	bad.BetaSchedule = "sigmoid"
	if _, err := bad.Levels(10); err == nil {
		t.Error("unknown beta schedule: no error")
	}
	if _, err := DefaultSD().Levels(0); err == nil {
		t.Error("0 steps: no error")
	}
	if _, err := DefaultSD().EulerLevels(1001); err == nil {
		t.Error("1001 steps: no error")
	}
}

func sigmaOf(l Level) float64 { return l.Sigma / l.Alpha }

func TestEulerLevels(t *testing.T) {
	d := DefaultSD()
	d.Spacing = Linspace
	levels, err := d.EulerLevels(3) // timesteps 999, 499.5, 0: Euler keeps the fraction
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ time, sigma float64 }{{999, sdSigmaMax}, {499.5, sdSigma4995}, {0, sdSigmaMin}, {-1, 0}}
	if len(levels) != len(want) {
		t.Fatalf("len = %d, want %d", len(levels), len(want))
	}
	for i, w := range want {
		l := levels[i]
		if l.Time != w.time || math.Abs(sigmaOf(l)-w.sigma) > 1e-9 {
			t.Errorf("level %d: Time %v sigma %.12g, want %v and %.12g", i, l.Time, sigmaOf(l), w.time, w.sigma)
		}
		if v := l.Alpha*l.Alpha + l.Sigma*l.Sigma; math.Abs(v-1) > floatEquality {
			t.Errorf("level %d: Alpha^2 + Sigma^2 = %v", i, v)
		}
	}
	if !levels[3].Clean() || levels[3].Alpha != 1 {
		t.Errorf("final level %+v, want clean", levels[3])
	}

	// At whole timesteps Euler's grid and DDIM's are the same points; only the end differs.
	ddim, err := DefaultSD().Levels(50)
	if err != nil {
		t.Fatal(err)
	}
	euler, err := DefaultSD().EulerLevels(50)
	if err != nil {
		t.Fatal(err)
	}
	if sigma := sigmaOf(euler[0]); math.Abs(sigma-sdSigma981) > 1e-9 {
		t.Errorf("SD leading first sigma = %.12g, want %.12g", sigma, sdSigma981)
	}
	for i := range 50 {
		e, g := euler[i], ddim[i]
		if e.Time != g.Time || math.Abs(e.Alpha-g.Alpha) > floatEquality || math.Abs(e.Sigma-g.Sigma) > floatEquality {
			t.Errorf("level %d: Euler %+v, DDIM %+v", i, e, g)
		}
	}
	if !euler[50].Clean() {
		t.Errorf("Euler final level %+v, want clean", euler[50])
	}
}

func TestKarrasLevels(t *testing.T) {
	const n = 10
	d := DefaultSD()
	d.Spacing = Linspace // interpolated range = the full training range
	d.Karras = true
	levels, err := d.Levels(n)
	if err != nil {
		t.Fatal(err)
	}
	euler, err := d.EulerLevels(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(levels) != n+1 {
		t.Fatalf("len = %d, want %d", len(levels), n+1)
	}
	abar := sdAbar(t)
	logSigmaAt := func(t float64) float64 { // log-sigma interpolated linearly at a fractional timestep
		i := min(int(t), 998)
		w := t - float64(i)
		lo, hi := math.Log(math.Sqrt((1-abar[i])/abar[i])), math.Log(math.Sqrt((1-abar[i+1])/abar[i+1]))
		return (1-w)*lo + w*hi
	}
	// Karras et al.: sigma^(1/7) falls in equal steps from sigma_max^(1/7) to sigma_min^(1/7).
	step := (math.Pow(sdSigmaMin, 1.0/7) - math.Pow(sdSigmaMax, 1.0/7)) / (n - 1)
	for i := range n {
		l := levels[i]
		if l != euler[i] {
			t.Errorf("level %d: Levels %+v, EulerLevels %+v", i, l, euler[i])
		}
		want := math.Pow(math.Pow(sdSigmaMax, 1.0/7)+float64(i)*step, 7)
		if got := sigmaOf(l); math.Abs(got-want) > 1e-9*want {
			t.Errorf("level %d: sigma %.12g, want %.12g", i, got, want)
		}
		// Time inverts the log-sigma interpolation.
		if got := logSigmaAt(l.Time); math.Abs(got-math.Log(sigmaOf(l))) > 1e-9 {
			t.Errorf("level %d: Time %v has log-sigma %.12g, want %.12g", i, l.Time, got, math.Log(sigmaOf(l)))
		}
		if i > 0 && !(l.Time < levels[i-1].Time) {
			t.Errorf("level %d: Time %v not below %v", i, l.Time, levels[i-1].Time)
		}
	}
	if levels[0].Time != 999 || math.Abs(levels[n-1].Time) > 1e-9 {
		t.Errorf("Times run %v..%v, want 999..0", levels[0].Time, levels[n-1].Time)
	}
	if last := levels[n]; last != (Level{Time: -1, Alpha: 1, Sigma: 0}) {
		t.Errorf("final level %+v, want sigma 0 at Time -1", last)
	}
}

// diffusers' Euler takes the Karras range from the sigmas at the spaced timesteps, so leading
// spacing (981..1 for 50 steps) narrows it.
func TestKarrasRangeFollowsSpacing(t *testing.T) {
	d := DefaultSD()
	d.Karras = true
	levels, err := d.Levels(50)
	if err != nil {
		t.Fatal(err)
	}
	const sdSigma1 = 0.04131441199678309 // sigma at timestep 1, computed with the others
	if got := sigmaOf(levels[0]); math.Abs(got-sdSigma981) > 1e-9 {
		t.Errorf("first sigma %.12g, want sigma(981) = %.12g", got, sdSigma981)
	}
	if got := sigmaOf(levels[49]); math.Abs(got-sdSigma1) > 1e-9 {
		t.Errorf("last sigma %.12g, want sigma(1) = %.12g", got, sdSigma1)
	}
	if math.Abs(levels[0].Time-981) > 1e-9 || math.Abs(levels[49].Time-1) > 1e-9 {
		t.Errorf("Times %v..%v, want 981..1", levels[0].Time, levels[49].Time)
	}
}

func TestSigmaToTEdges(t *testing.T) {
	logTable := []float64{math.Log(1), math.Log(2), math.Log(4)}
	for _, tc := range []struct{ sigma, want float64 }{
		{0.5, 0}, {1, 0}, {math.Sqrt2, 0.5}, {2, 1}, {2 * math.Sqrt2, 1.5}, {4, 2}, {8, 2}, {0, 0},
	} {
		if got := sigmaToT(tc.sigma, logTable); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("sigmaToT(%v) = %v, want %v", tc.sigma, got, tc.want)
		}
	}
}
