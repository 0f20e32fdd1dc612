package step

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fksteer/fksteer/schedule"
)

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func flowGrid(tb testing.TB, shift float64, n int) []schedule.Level {
	tb.Helper()
	levels, err := schedule.Flow{Shift: shift}.Levels(n)
	if err != nil {
		tb.Fatal(err)
	}
	return levels
}

func discreteGrid(tb testing.TB, d schedule.Discrete, n int) []schedule.Level {
	tb.Helper()
	levels, err := d.Levels(n)
	if err != nil {
		tb.Fatal(err)
	}
	return levels
}

// closeTo reports whether got is within tol of want, relative to max(1, |want|).
func closeTo(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*max(1, math.Abs(want))
}

// float32Tol is what storing a float64 result as float32 costs, with some room.
const float32Tol = 1e-6

// DDIM against DESIGN.md's formula on the training table's abar, not on (Alpha, Sigma).
func TestDDIMMatchesDesignOnVPLevels(t *testing.T) {
	const n = 50
	d := schedule.DefaultSD()
	abar, err := d.AlphasCumprod()
	if err != nil {
		t.Fatal(err)
	}
	levels := discreteGrid(t, d, n)
	r := rand.New(rand.NewPCG(1, 2))
	x0, eps, mean := randSlice(r, 64), randSlice(r, 64), make([]float32, 64)
	for _, eta := range []float64{0, 0.3, 1} {
		for i := range n {
			ab := abar[int(levels[i].Time)]
			abNext := abar[0] // the last step lands on abar[0]: set_alpha_to_one is false
			if i+1 < n {
				abNext = abar[int(levels[i+1].Time)]
			}
			sigma := eta * math.Sqrt((1-abNext)/(1-ab)) * math.Sqrt(1-ab/abNext)
			std := DDIM(mean, x0, eps, levels[i], levels[i+1], eta)
			if !closeTo(std, sigma, 1e-12) {
				t.Fatalf("eta %v step %d: std %.15g, want %.15g", eta, i, std, sigma)
			}
			for j := range mean {
				want := math.Sqrt(abNext)*float64(x0[j]) + math.Sqrt(1-abNext-sigma*sigma)*float64(eps[j])
				if !closeTo(float64(mean[j]), want, float32Tol) {
					t.Fatalf("eta %v step %d element %d: mean %.9g, want %.9g", eta, i, j, mean[j], want)
				}
			}
		}
	}
}

// DDIM against DESIGN.md's marginal-preserving flow step, written in t.
func TestDDIMMatchesDesignOnFlowLevels(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x0, eps, mean := randSlice(r, 64), randSlice(r, 64), make([]float32, 64)
	for _, shift := range []float64{0, 3} {
		levels := flowGrid(t, shift, 20)
		for _, eta := range []float64{0.5, 1} {
			for i := 0; i+1 < len(levels); i++ {
				tt, next := levels[i].Sigma, levels[i+1].Sigma
				q := (1 - tt) * next / (tt * (1 - next))
				s := eta * next * math.Sqrt(1-q*q)
				std := DDIM(mean, x0, eps, levels[i], levels[i+1], eta)
				if !closeTo(std, s, 1e-12) {
					t.Fatalf("shift %v eta %v step %d: std %.15g, want %.15g", shift, eta, i, std, s)
				}
				for j := range mean {
					want := (1-next)*float64(x0[j]) + math.Sqrt(next*next-s*s)*float64(eps[j])
					if !closeTo(float64(mean[j]), want, float32Tol) {
						t.Fatalf("shift %v eta %v step %d: mean %.9g, want %.9g", shift, eta, i, mean[j], want)
					}
				}
			}
			if last := mean[0]; last != x0[0] {
				t.Errorf("last step: mean %v, want x0 = %v", last, x0[0])
			}
		}
	}
}

func TestDDIMFlowEtaZeroIsEuler(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	x0, eps, mean := randSlice(r, 64), randSlice(r, 64), make([]float32, 64)
	levels := flowGrid(t, 3, 10)
	for i := 0; i+1 < len(levels); i++ {
		tt, next := levels[i].Sigma, levels[i+1].Sigma
		if std := DDIM(mean, x0, eps, levels[i], levels[i+1], 0); std != 0 {
			t.Fatalf("step %d: std %v, want 0", i, std)
		}
		for j := range mean {
			v := float64(eps[j]) - float64(x0[j])
			x := (1-tt)*float64(x0[j]) + tt*float64(eps[j])
			if want := x - (tt-next)*v; !closeTo(float64(mean[j]), want, float32Tol) {
				t.Fatalf("step %d: mean %.9g, want Euler's %.9g", i, mean[j], want)
			}
		}
	}
}

// consistent returns x0 and a state x = Alpha*x0 + Sigma*noise at level l, and the eps that
// (x, x0) imply, recomputed from the stored float32 x as a pipeline would.
func consistent(r *rand.Rand, n int, l schedule.Level) (x, x0, eps []float32) {
	x0, noise := randSlice(r, n), randSlice(r, n)
	x, eps = make([]float32, n), make([]float32, n)
	for i := range x {
		x[i] = float32(l.Alpha*float64(x0[i]) + l.Sigma*float64(noise[i]))
		eps[i] = float32((float64(x[i]) - l.Alpha*float64(x0[i])) / l.Sigma)
	}
	return x, x0, eps
}

func testGrids(t *testing.T) map[string][]schedule.Level {
	t.Helper()
	clean := schedule.DefaultSD()
	clean.SetAlphaToOne = true
	karras := schedule.DefaultSD()
	karras.Karras = true
	return map[string][]schedule.Level{
		"sd":         discreteGrid(t, schedule.DefaultSD(), 50),
		"sd-clean":   discreteGrid(t, clean, 50),
		"sd-karras":  discreteGrid(t, karras, 25),
		"flow":       flowGrid(t, 0, 28),
		"flow-shift": flowGrid(t, 3, 28),
	}
}

func TestDDPMIsDDIMWithEtaOne(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	ddpm, ddim := make([]float32, 256), make([]float32, 256)
	for name, levels := range testGrids(t) {
		for i := 0; i+1 < len(levels); i++ {
			from, to := levels[i], levels[i+1]
			x, x0, eps := consistent(r, 256, from)
			stdP := DDPM(ddpm, x, x0, from, to)
			stdI := DDIM(ddim, x0, eps, from, to, 1)
			if !closeTo(stdP, stdI, 1e-9) {
				t.Fatalf("%s step %d: DDPM std %.12g, DDIM std %.12g", name, i, stdP, stdI)
			}
			for j := range ddpm {
				if math.Abs(float64(ddpm[j])-float64(ddim[j])) > 1e-5 {
					t.Fatalf("%s step %d element %d: DDPM mean %.9g, DDIM mean %.9g", name, i, j, ddpm[j], ddim[j])
				}
			}
		}
	}
}

func TestEulerAncestralIsDDIM(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	x0, eps := randSlice(r, 256), randSlice(r, 256)
	ea, ddim := make([]float32, 256), make([]float32, 256)
	for name, levels := range testGrids(t) {
		for _, eta := range []float64{0, 0.5, 1, 2} { // 2 exercises the cap at Sigma'
			for i := 0; i+1 < len(levels); i++ {
				stdA := EulerAncestral(ea, x0, eps, levels[i], levels[i+1], eta)
				stdI := DDIM(ddim, x0, eps, levels[i], levels[i+1], eta)
				if !closeTo(stdA, stdI, 1e-9) {
					t.Fatalf("%s eta %v step %d: Euler-a std %.12g, DDIM std %.12g", name, eta, i, stdA, stdI)
				}
				for j := range ea {
					if !closeTo(float64(ea[j]), float64(ddim[j]), float32Tol) {
						t.Fatalf("%s eta %v step %d: Euler-a mean %.9g, DDIM mean %.9g", name, eta, i, ea[j], ddim[j])
					}
				}
			}
		}
	}
}

func TestAncestralSplit(t *testing.T) {
	for _, tc := range []struct{ sigma, next, eta, down, up float64 }{
		// up^2 = 25 (100 - 25)/100 = 18.75, down^2 = 25 - 18.75 = 6.25.
		{10, 5, 1, 2.5, math.Sqrt(18.75)},
		{10, 5, 0, 5, 0},
		{10, 5, 2, 0, 5}, // 2*sqrt(18.75) > 5: capped
		{math.Inf(1), 5, 1, 0, 5},
		{math.Inf(1), 5, 0.6, 4, 3},
	} {
		down, up := ancestralSplit(tc.sigma, tc.next, tc.eta)
		if !closeTo(down, tc.down, 1e-12) || !closeTo(up, tc.up, 1e-12) {
			t.Errorf("ancestralSplit(%v, %v, %v) = %v, %v; want %v, %v", tc.sigma, tc.next, tc.eta, down, up, tc.down, tc.up)
		}
	}
}

// FlowSDE against Flow-GRPO's own expression, which uses the velocity and the grid.
func TestFlowSDEMatchesFlowGRPO(t *testing.T) {
	const a = 0.7
	r := rand.New(rand.NewPCG(11, 12))
	sigmas := flowGrid(t, 3, 10)
	x, v := randSlice(r, 128), randSlice(r, 128)
	x0, eps, mean := make([]float32, 128), make([]float32, 128), make([]float32, 128)
	for i := 0; i+1 < len(sigmas); i++ {
		sigma, prev := sigmas[i].Sigma, sigmas[i+1].Sigma
		for j := range x { // the pipeline's conversions: x0 = x - t v, noise = x + (1-t) v
			x0[j] = float32(float64(x[j]) - sigma*float64(v[j]))
			eps[j] = float32(float64(x[j]) + (1-sigma)*float64(v[j]))
		}
		// Every step, the last (prev = 0) included: Flow-GRPO's sampler draws it too.
		std := FlowSDE(mean, x, x0, eps, sigmas[i], sigmas[i+1], a)
		dt := prev - sigma
		den := sigma
		if sigma == 1 {
			den = sigmas[1].Sigma // Flow-GRPO's sigma_max
		}
		stdDev := math.Sqrt(sigma/(1-den)) * a
		if want := stdDev * math.Sqrt(-dt); !closeTo(std, want, 1e-12) {
			t.Fatalf("step %d: std %.15g, want %.15g", i, std, want)
		}
		for j := range x {
			want := float64(x[j])*(1+stdDev*stdDev/(2*sigma)*dt) + float64(v[j])*(1+stdDev*stdDev*(1-sigma)/(2*sigma))*dt
			if !closeTo(float64(mean[j]), want, 1e-5) {
				t.Fatalf("step %d element %d: mean %.9g, want %.9g", i, j, mean[j], want)
			}
		}
	}
	// At t = 1 the substitution makes the first step's std exactly a: sqrt(1/(1-t')) sqrt(1-t').
	plain := flowGrid(t, 0, 10)
	if std := FlowSDE(mean, x, x0, eps, plain[0], plain[1], a); !closeTo(std, a, 1e-12) {
		t.Errorf("first step std %v, want a = %v", std, a)
	}
}

// TestStepsOntoCleanData: every rule but flow-sde lands on the prediction at t' = 0 (flow-sde
// draws that step as Flow-GRPO does; see TestFlowSDEMatchesFlowGRPO).
func TestStepsOntoCleanData(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	x, x0, eps, mean := randSlice(r, 32), randSlice(r, 32), randSlice(r, 32), make([]float32, 32)
	prevX0 := randSlice(r, 32)
	prev := schedule.Level{Time: 0.5, Alpha: 0.8, Sigma: 0.6}
	from := schedule.Level{Time: 0.1, Alpha: 0.9, Sigma: 0.1}
	clean := schedule.Level{Time: 0, Alpha: 1, Sigma: 0}
	for name, step := range map[string]func() float64{
		"ddim":            func() float64 { return DDIM(mean, x0, eps, from, clean, 1) },
		"ddpm":            func() float64 { return DDPM(mean, x, x0, from, clean) },
		"euler-ancestral": func() float64 { return EulerAncestral(mean, x0, eps, from, clean, 1) },
		"flow-sde-clean": func() float64 {
			return Take(schedule.FlowSDECleanRule, mean, x, x0, eps, nil, nil, from, clean, 0.7)
		},
		"dpm++2m":         func() float64 { return DPMSolver2M(mean, x, x0, nil, nil, from, clean) },
		"dpm++2m with m1": func() float64 { return DPMSolver2M(mean, x, x0, prevX0, &prev, from, clean) },
		"lcm":             func() float64 { return LCM(mean, x0, clean) },
	} {
		clear(mean)
		if std := step(); std != 0 {
			t.Errorf("%s: std %v, want 0", name, std)
		}
		for j := range mean {
			if mean[j] != x0[j] {
				t.Fatalf("%s: mean[%d] = %v, want x0 = %v", name, j, mean[j], x0[j])
			}
		}
	}
}

func TestLengthMismatchPanics(t *testing.T) {
	l0, l1 := schedule.Level{Alpha: 0.5, Sigma: 0.5}, schedule.Level{Alpha: 0.75, Sigma: 0.25}
	short, long := make([]float32, 3), make([]float32, 4)
	for name, f := range map[string]func(){
		"ddim":            func() { DDIM(long, long, short, l0, l1, 1) },
		"ddpm":            func() { DDPM(long, short, long, l0, l1) },
		"euler-ancestral": func() { EulerAncestral(short, long, long, l0, l1, 1) },
		"flow-sde":        func() { FlowSDE(long, long, long, short, l0, l1, 1) },
		"dpm++2m":         func() { DPMSolver2M(long, short, long, nil, nil, l0, l1) },
		"dpm++2m m1":      func() { DPMSolver2M(long, long, long, short, &l0, l0, l1) },
		"lcm":             func() { LCM(long, short, l1) },
		"logprob":         func() { LogProb(short, long, 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic on mismatched lengths", name)
				}
			}()
			f()
		}()
	}
}

func TestRulesDoNotAllocate(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	x, x0, eps, mean := randSlice(r, 1024), randSlice(r, 1024), randSlice(r, 1024), make([]float32, 1024)
	from, to := schedule.Level{Alpha: 0.6, Sigma: 0.8}, schedule.Level{Alpha: 0.8, Sigma: 0.6}
	prev := schedule.Level{Alpha: 0.28, Sigma: 0.96}
	for name, f := range map[string]func(){
		"ddim":            func() { DDIM(mean, x0, eps, from, to, 1) },
		"ddpm":            func() { DDPM(mean, x, x0, from, to) },
		"euler-ancestral": func() { EulerAncestral(mean, x0, eps, from, to, 1) },
		"flow-sde":        func() { FlowSDE(mean, x, x0, eps, from, to, 0.7) },
		"dpm++2m":         func() { DPMSolver2M(mean, x, x0, eps, &prev, from, to) },
		"lcm":             func() { LCM(mean, x0, to) },
		"logprob":         func() { LogProb(x, mean, 0.5) },
	} {
		if n := testing.AllocsPerRun(20, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}

// snrLevel is the variance-preserving level whose log signal-to-noise ratio log(Alpha/Sigma) is
// log(q): Alpha = q/sqrt(1+q^2), Sigma = 1/sqrt(1+q^2).
func snrLevel(q float64) schedule.Level {
	return schedule.Level{Alpha: q / math.Sqrt(1+q*q), Sigma: 1 / math.Sqrt(1+q*q)}
}

// TestDPMSolver2MHandComputed takes two steps by hand on levels a lambda of ln 2 apart: L0
// (Alpha/Sigma = 1), L1 (2) and L2 (4), so exp(-h) = 1/2 for both steps and r0 = 1.
//
// Step 1, first order, from x = 1 with x0 = 1:
//
//	x1 = (Sigma1/Sigma0) x + Alpha1 (1 - 1/2) x0 = sqrt(2)/sqrt(5) + (2/sqrt(5))/2 = (1 + sqrt 2)/sqrt 5
//
// Step 2, second order, with x0 = 2 and the step-1 prediction m1 = 1: D0 = 2, D1 = (2-1)/1 = 1,
//
//	x2 = (Sigma2/Sigma1) x1 + Alpha2 (1/2) (D0 + D1/2) = (1 + sqrt 2)/sqrt 17 + (4/sqrt 17)(5/4)
//	   = (6 + sqrt 2)/sqrt 17.
func TestDPMSolver2MHandComputed(t *testing.T) {
	l0, l1, l2 := snrLevel(1), snrLevel(2), snrLevel(4)
	mean := make([]float32, 1)
	if std := DPMSolver2M(mean, []float32{1}, []float32{1}, nil, nil, l0, l1); std != 0 {
		t.Errorf("std %v, want 0", std)
	}
	x1 := (1 + math.Sqrt2) / math.Sqrt(5)
	if !closeTo(float64(mean[0]), x1, float32Tol) {
		t.Errorf("first step: %.9g, want (1+sqrt 2)/sqrt 5 = %.9g", mean[0], x1)
	}
	x := []float32{mean[0]}
	DPMSolver2M(mean, x, []float32{2}, []float32{1}, &l0, l1, l2)
	if want := (6 + math.Sqrt2) / math.Sqrt(17); !closeTo(float64(mean[0]), want, float32Tol) {
		t.Errorf("second step: %.9g, want (6+sqrt 2)/sqrt 17 = %.9g", mean[0], want)
	}
	// The same step without the memory is first order: (1+sqrt 2)/sqrt 17 + (4/sqrt 17)(1/2)2.
	DPMSolver2M(mean, x, []float32{2}, nil, nil, l1, l2)
	if want := (5 + math.Sqrt2) / math.Sqrt(17); !closeTo(float64(mean[0]), want, float32Tol) {
		t.Errorf("second step, first order: %.9g, want (5+sqrt 2)/sqrt 17 = %.9g", mean[0], want)
	}
}

// The first-order DPM-Solver++ step is DDIM with eta 0 (both are the exponential integrator of
// the probability-flow ODE with x0 held constant), on every grid; and a second-order step whose
// previous prediction equals the current one is the first-order step.
func TestDPMSolver2MFirstOrderIsDDIM(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 23))
	dpm, ddim, second := make([]float32, 256), make([]float32, 256), make([]float32, 256)
	for name, levels := range testGrids(t) {
		for i := 0; i+1 < len(levels); i++ {
			from, to := levels[i], levels[i+1]
			if from.Alpha == 0 { // pure noise: x = eps, x0 undefined; consistent() needs Alpha > 0
				continue
			}
			x, x0, eps := consistent(r, 256, from)
			DPMSolver2M(dpm, x, x0, nil, nil, from, to)
			DDIM(ddim, x0, eps, from, to, 0)
			var prev *schedule.Level
			if i > 0 && levels[i-1].Alpha > 0 {
				prev = &levels[i-1]
			}
			DPMSolver2M(second, x, x0, x0, prev, from, to)
			for j := range dpm {
				if math.Abs(float64(dpm[j])-float64(ddim[j])) > 1e-5*max(1, math.Abs(float64(ddim[j]))) {
					t.Fatalf("%s step %d element %d: DPM-Solver++ first order %.9g, DDIM %.9g", name, i, j, dpm[j], ddim[j])
				}
				if math.Abs(float64(second[j])-float64(dpm[j])) > 1e-5*max(1, math.Abs(float64(dpm[j]))) {
					t.Fatalf("%s step %d element %d: second order with m1 = x0 %.9g, first order %.9g", name, i, j, second[j], dpm[j])
				}
			}
		}
	}
}

func TestLCM(t *testing.T) {
	x0, mean := []float32{1, -2, 0.5}, make([]float32, 3)
	to := schedule.Level{Alpha: 0.8, Sigma: 0.6}
	if std := LCM(mean, x0, to); std != 0.6 {
		t.Errorf("std %v, want Sigma' = 0.6", std)
	}
	for j, want := range []float64{0.8, -1.6, 0.4} {
		if !closeTo(float64(mean[j]), want, float32Tol) {
			t.Errorf("mean[%d] = %v, want Alpha'*x0 = %v", j, mean[j], want)
		}
	}
}

// A batch of 16 SD-sized latent rows: 16 x 1024 elements.
func BenchmarkDDIM(b *testing.B) {
	r := rand.New(rand.NewPCG(17, 18))
	x0, eps, mean := randSlice(r, 16*1024), randSlice(r, 16*1024), make([]float32, 16*1024)
	levels := discreteGrid(b, schedule.DefaultSD(), 50)
	b.ReportAllocs()
	b.SetBytes(int64(len(mean)) * 4 * 3)
	for b.Loop() {
		DDIM(mean, x0, eps, levels[10], levels[11], 1)
	}
}

// gaussian is 1-D data x0 ~ N(mu, s^2). Every level's marginal is then Gaussian too,
// x ~ N(Alpha mu, Alpha^2 s^2 + Sigma^2), and the exact posterior mean is linear in x,
// E[x0 | x] = mu + (Alpha s^2 / V)(x - Alpha mu), so chains it drives can be followed in closed form.
type gaussian struct{ mu, s float64 }

func (g gaussian) marginal(l schedule.Level) (mean, variance float64) {
	return l.Alpha * g.mu, l.Alpha*l.Alpha*g.s*g.s + l.Sigma*l.Sigma
}

// predict is a perfect denoiser: x0 = E[x0 | x] and eps = (x - Alpha x0)/Sigma.
func (g gaussian) predict(x0, eps, x []float32, l schedule.Level) {
	m, v := g.marginal(l)
	k := l.Alpha * g.s * g.s / v
	for i, xi := range x {
		p := g.mu + k*(float64(xi)-m)
		x0[i] = float32(p)
		eps[i] = float32((float64(xi) - l.Alpha*p) / l.Sigma)
	}
}

// ddimVariance is the exact variance after the first `steps` DDIM steps driven by predict,
// from the formulas rather than the code. With y = x - Alpha mu, predict gives
// x0 - mu = k y (k = Alpha s^2/V) and eps = (Sigma/V) y, so a step is
// y' = (Alpha' k + c Sigma/V) y + s z with c = sqrt(Sigma'^2 - s^2); the mean stays exact.
func (g gaussian) ddimVariance(levels []schedule.Level, eta float64, steps int) float64 {
	_, v := g.marginal(levels[0])
	for i := range steps {
		from, to := levels[i], levels[i+1]
		_, vFrom := g.marginal(from)
		k := from.Alpha * g.s * g.s / vFrom
		q := from.Alpha * to.Sigma / (from.Sigma * to.Alpha)
		s := eta * to.Sigma * math.Sqrt(1-q*q)
		c := math.Sqrt(to.Sigma*to.Sigma - s*s)
		slope := to.Alpha*k + c*from.Sigma/vFrom
		v = slope*slope*v + s*s
	}
	return v
}

func meanVar(x []float32) (mean, variance float64) {
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	for _, v := range x {
		d := float64(v) - mean
		variance += d * d
	}
	return mean, variance / float64(len(x)-1)
}

// TestDDIMGaussianChains runs 20000 chains (seed 20, 21) from the first level's exact marginal
// (pure noise for flows) through 50 levels with DDIM and a perfect denoiser, and checks the
// samples halfway and at the end:
//
//   - the sample mean is within 5 standard errors of the level's marginal mean, which DDIM with
//     E[x0|x] keeps exactly for any number of steps;
//   - the sample variance is within 5 standard errors of the chain's exact variance (ddimVariance);
//   - that exact variance is within 20% of the marginal's. It falls short because E[x0|x] drops
//     Var[x0|x] at every step (Bao et al. 2022, Analytic-DPM): at 50 steps by 6% (flow, eta 0),
//     12% (flow, eta 1), 9% and 18% (SD); TestRulesPreserveMarginalsAsStepsGrow shows it vanish.
func TestDDIMGaussianChains(t *testing.T) {
	const (
		chains  = 20000
		nSigma  = 5
		biasTol = 0.2
	)
	g := gaussian{mu: 2, s: 0.5}
	for _, tc := range []struct {
		name   string
		levels []schedule.Level
		eta    float64
	}{
		{"flow eta 1", flowGrid(t, 0, 50), 1},
		{"flow eta 0", flowGrid(t, 0, 50), 0},
		{"sd eta 1", discreteGrid(t, schedule.DefaultSD(), 50), 1},
		{"sd eta 0", discreteGrid(t, schedule.DefaultSD(), 50), 0},
	} {
		r := rand.New(rand.NewPCG(20, 21))
		m0, v0 := g.marginal(tc.levels[0])
		x := make([]float32, chains)
		for i := range x {
			x[i] = float32(m0 + math.Sqrt(v0)*r.NormFloat64())
		}
		x0, eps, mean := make([]float32, chains), make([]float32, chains), make([]float32, chains)
		check := func(step int) {
			wantMean, wantVar := g.marginal(tc.levels[step])
			chainVar := g.ddimVariance(tc.levels, tc.eta, step)
			m, v := meanVar(x)
			seMean, seVar := math.Sqrt(chainVar/chains), chainVar*math.Sqrt(2.0/(chains-1))
			if math.Abs(m-wantMean) > nSigma*seMean {
				t.Errorf("%s, level %d: sample mean %.5f, want %.5f ± %.5f", tc.name, step, m, wantMean, nSigma*seMean)
			}
			if math.Abs(v-chainVar) > nSigma*seVar {
				t.Errorf("%s, level %d: sample variance %.5f, want the chain's %.5f ± %.5f", tc.name, step, v, chainVar, nSigma*seVar)
			}
			if math.Abs(chainVar/wantVar-1) > biasTol {
				t.Errorf("%s, level %d: chain variance %.5f, marginal %.5f: off by more than %v", tc.name, step, chainVar, wantVar, biasTol)
			}
		}
		last := len(tc.levels) - 1
		for i := range last {
			g.predict(x0, eps, x, tc.levels[i])
			std := DDIM(mean, x0, eps, tc.levels[i], tc.levels[i+1], tc.eta)
			for j := range x {
				x[j] = mean[j] + float32(std*r.NormFloat64())
			}
			if i+1 == last/2 || i+1 == last {
				check(i + 1)
			}
		}
	}
}

// stepFunc adapts a rule to one signature for the tests that run them all.
type stepFunc func(mean, x, x0, eps []float32, from, to schedule.Level) float64

// TestRulesPreserveMarginalsAsStepsGrow follows every rule exactly, without sampling. Driven by
// the perfect denoiser each rule is affine in x plus Gaussian noise, so running it at two points
// gives the step's slope, and the chain's mean and variance propagate in closed form. With 1000
// steps the final mean must be exact (to float32 rounding) and the variance within 2.5% of the
// data's: the discretisation error of TestDDIMGaussianChains shrinks about as 1/N (flow DDIM
// eta 1: 12% at 50 steps, 3.4% at 200, 0.7% at 1000; SD: 19%, 7%, 1.9%). Flow-GRPO's SDE
// converges more slowly (0.4% at 1000 steps): at t = 1 its first step adds noise of standard
// deviation a whatever the number of steps.
func TestRulesPreserveMarginalsAsStepsGrow(t *testing.T) {
	const (
		n      = 1000
		varTol = 0.025
	)
	g := gaussian{mu: 2, s: 0.5}
	sd := schedule.DefaultSD()
	sd.Spacing = schedule.Trailing // 999..0: every training timestep
	sd.SetAlphaToOne = true        // end on clean data, so the target is N(mu, s^2)
	grids := map[string][]schedule.Level{"flow": flowGrid(t, 0, n), "sd": discreteGrid(t, sd, n)}
	rules := map[string]stepFunc{
		"ddim eta 0": func(mean, x, x0, eps []float32, from, to schedule.Level) float64 {
			return DDIM(mean, x0, eps, from, to, 0)
		},
		"ddim eta 1": func(mean, x, x0, eps []float32, from, to schedule.Level) float64 {
			return DDIM(mean, x0, eps, from, to, 1)
		},
		"ddpm": func(mean, x, x0, eps []float32, from, to schedule.Level) float64 {
			return DDPM(mean, x, x0, from, to)
		},
		"euler-ancestral eta 1": func(mean, x, x0, eps []float32, from, to schedule.Level) float64 {
			return EulerAncestral(mean, x0, eps, from, to, 1)
		},
		"flow-sde a 0.7": func(mean, x, x0, eps []float32, from, to schedule.Level) float64 {
			return FlowSDE(mean, x, x0, eps, from, to, 0.7)
		},
	}
	x, x0, eps, mean := make([]float32, 2), make([]float32, 2), make([]float32, 2), make([]float32, 2)
	for gridName, levels := range grids {
		for ruleName, step := range rules {
			if ruleName == "flow-sde a 0.7" && gridName != "flow" {
				continue
			}
			m, v := g.marginal(levels[0])
			for i := range len(levels) - 1 {
				center, _ := g.marginal(levels[i])
				x[0], x[1] = float32(center), float32(center+1)
				g.predict(x0, eps, x, levels[i])
				std := step(mean, x, x0, eps, levels[i], levels[i+1])
				slope := float64(mean[1]) - float64(mean[0])
				m = float64(mean[0]) + slope*(m-center)
				v = slope*slope*v + std*std
			}
			if math.Abs(m-g.mu) > 1e-3 || math.Abs(v/(g.s*g.s)-1) > varTol {
				t.Errorf("%s on %s, %d steps: final mean %.5f variance %.5f, want %v and %v within %v",
					ruleName, gridName, n, m, v, g.mu, g.s*g.s, varTol*100)
			}
		}
	}
}
