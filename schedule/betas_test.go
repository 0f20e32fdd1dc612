package schedule

import (
	"math"
	"strings"
	"testing"
)

// The reference values in these tests were computed separately in plain Python (float64, no
// numpy): beta = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2, abar = cumprod(1 - beta).
const (
	sdAbar999     = 0.004660098513077238 // abar[999]; DESIGN.md rounds it to 0.0047
	sdSigmaMax    = 14.614641229333639   // sqrt((1-abar[999])/abar[999])
	sdSigmaMin    = 0.029167158151720367 // sqrt((1-abar[0])/abar[0])
	sdSigma981    = 13.120410742553977   // first leading timestep of 50
	sdSigma4995   = 1.6155825101612464   // (sigma(499) + sigma(500)) / 2
	sdAbar981     = 0.005775500139495751
	sdTrainSteps  = 1000
	sdBetaStart   = 0.00085
	sdBetaEnd     = 0.012
	floatEquality = 1e-12
)

func sdAbar(t *testing.T) []float64 {
	t.Helper()
	betas, err := Betas(ScaledLinear, sdTrainSteps, sdBetaStart, sdBetaEnd)
	if err != nil {
		t.Fatal(err)
	}
	return AlphasCumprod(betas)
}

func TestScaledLinearKnownValues(t *testing.T) {
	abar := sdAbar(t)
	if len(abar) != 1000 {
		t.Fatalf("len = %d, want 1000", len(abar))
	}
	if got := abar[0]; math.Abs(got-0.99915) > 1e-12 {
		t.Errorf("abar[0] = %.15g, want 0.99915", got)
	}
	if got := abar[999]; math.Abs(got-sdAbar999) > 1e-12 {
		t.Errorf("abar[999] = %.15g, want %.15g (about 0.0047)", got, sdAbar999)
	}
	if got := abar[981]; math.Abs(got-sdAbar981) > 1e-12 {
		t.Errorf("abar[981] = %.15g, want %.15g", got, sdAbar981)
	}
	if got := math.Sqrt((1 - abar[999]) / abar[999]); math.Abs(got-14.6146) > 1e-4 {
		t.Errorf("Euler sigma_max = %.6f, want 14.6146", got)
	}
	for i := 1; i < len(abar); i++ {
		if !(abar[i] < abar[i-1]) {
			t.Fatalf("abar not decreasing at %d: %g >= %g", i, abar[i], abar[i-1])
		}
	}
}

func TestLinearBetas(t *testing.T) {
	betas, err := Betas(Linear, 1000, 0.0001, 0.02)
	if err != nil {
		t.Fatal(err)
	}
	step := (0.02 - 0.0001) / 999
	for _, i := range []int{0, 1, 500, 998, 999} {
		if want := 0.0001 + float64(i)*step; math.Abs(betas[i]-want) > floatEquality {
			t.Errorf("beta[%d] = %.15g, want %.15g", i, betas[i], want)
		}
	}
	if betas[999] != 0.02 {
		t.Errorf("last beta = %v, want exactly 0.02", betas[999])
	}
	one, err := Betas(Linear, 1, 0.0001, 0.02)
	if err != nil || len(one) != 1 || one[0] != 0.0001 {
		t.Errorf("one training step: %v, %v; want [0.0001] as numpy.linspace gives", one, err)
	}
}

func TestCosineBetas(t *testing.T) {
	const T = 1000
	betas, err := Betas(SquaredCosCapV2, T, 0, 0) // start and end are ignored
	if err != nil {
		t.Fatal(err)
	}
	f := func(u float64) float64 { return math.Pow(math.Cos((u+0.008)/1.008*math.Pi/2), 2) }
	// The product of the uncapped 1-beta telescopes: abar_t = f((t+1)/T) / f(0).
	abar := AlphasCumprod(betas)
	for _, i := range []int{0, 10, 500, 900, 980} {
		if want := f(float64(i+1)/T) / f(0); math.Abs(abar[i]-want) > 1e-12 {
			t.Errorf("abar[%d] = %.15g, want %.15g", i, abar[i], want)
		}
	}
	if betas[T-1] != 0.999 {
		t.Errorf("last beta = %v, want the 0.999 cap (f(1) = 0)", betas[T-1])
	}
}

func TestBetasErrors(t *testing.T) {
	for _, tc := range []struct {
		kind        BetaSchedule
		steps       int
		start, end  float64
		errContains string
	}{
		{"cosine", 1000, 0.1, 0.2, "linear, scaled_linear, squaredcos_cap_v2"},
		{Linear, 0, 0.1, 0.2, "training steps"},
		{Linear, 1000, -0.1, 0.2, "out of range"},
		{ScaledLinear, 1000, 0.1, 1, "out of range"},
		{ScaledLinear, 1000, math.NaN(), 0.2, "out of range"},
	} {
		_, err := Betas(tc.kind, tc.steps, tc.start, tc.end)
		if err == nil || !strings.Contains(err.Error(), tc.errContains) {
			t.Errorf("Betas(%q, %d, %v, %v) error = %v, want one containing %q",
				tc.kind, tc.steps, tc.start, tc.end, err, tc.errContains)
		}
	}
}

func TestParseBetaSchedule(t *testing.T) {
	for _, s := range []string{"linear", "scaled_linear", "squaredcos_cap_v2"} {
		if got, err := ParseBetaSchedule(s); err != nil || string(got) != s {
			t.Errorf("ParseBetaSchedule(%q) = %q, %v", s, got, err)
		}
	}
	if got, err := ParseBetaSchedule(" Scaled_Linear"); err != nil || got != ScaledLinear {
		t.Errorf("ParseBetaSchedule(%q) = %q, %v; want scaled_linear (case and space ignored)", " Scaled_Linear", got, err)
	}
	_, err := ParseBetaSchedule("cosine")
	if err == nil || !strings.Contains(err.Error(), `"cosine"`) || !strings.Contains(err.Error(), "scaled_linear") {
		t.Errorf("ParseBetaSchedule(%q) error = %v, want it to name the value and the valid ones", "cosine", err)
	}
}

// numpy's linspace sets the last value to stop exactly; 49 * (1/49) alone would be 0.9999999999999999.
func TestLinspaceEndsExactly(t *testing.T) {
	if got := linspace(0, 1, 50); got[0] != 0 || got[49] != 1 {
		t.Errorf("linspace(0, 1, 50) ends %v, %v; want 0 and exactly 1", got[0], got[49])
	}
}
