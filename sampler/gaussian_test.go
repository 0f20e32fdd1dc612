package sampler_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// gaussPipeline is a pipeline whose data are Gaussian, x0 ~ N(mu, s^2 I), with the exact noise
// prediction at every level: the marginal there is x ~ N(Alpha mu, V I), V = Alpha^2 s^2 +
// Sigma^2, and E[eps | x] = Sigma (x - Alpha mu)/V, linear in x. It is an epsilon model, so its
// x0 comes from pipelines.ToX0Eps like a real one's. Its levels are Stable Diffusion 1.5's
// (schedule.DefaultSD) DDIM grid, its Euler grid (euler), or any grid. Decode copies states
// into images unchanged. It allocates nothing and needs no ONNX Runtime.
//
// The probability-flow ODE of these data has a closed form (flow), so deterministic samplers
// can be checked against the exact end of their own trajectories.
type gaussPipeline struct {
	mu    []float32 // one mean per state element
	s     float64
	euler bool
	grid  func(n int) ([]schedule.Level, error) // overrides the SD grids when set
}

// newGauss returns Gaussian data of d elements with means spread over [-1, 1] and deviation s.
func newGauss(d int, s float64, euler bool) gaussPipeline {
	mu := make([]float32, d)
	for j := range mu {
		mu[j] = float32(-1 + 2*float64(j)/float64(d-1))
	}
	return gaussPipeline{mu: mu, s: s, euler: euler}
}

func (g gaussPipeline) Info() pipelines.Info {
	d := len(g.mu)
	return pipelines.Info{Name: "gaussian", Channels: 1, Height: 1, Width: d, ImageChannels: 1, ImageHeight: 1, ImageWidth: d,
		Prediction: pipelines.PredictEpsilon, Conditioning: pipelines.Unconditioned}
}

func (g gaussPipeline) Schedule(steps int) ([]schedule.Level, error) {
	switch {
	case g.grid != nil:
		return g.grid(steps)
	case g.euler:
		return schedule.DefaultSD().EulerLevels(steps)
	}
	return schedule.DefaultSD().Levels(steps)
}

func (gaussPipeline) Condition(context.Context, *pipelines.Stats, string, pipelines.CondOptions) (pipelines.Cond, error) {
	return pipelines.Cond{Kind: pipelines.Unconditioned}, nil
}

func (g gaussPipeline) Predict(_ context.Context, _ *pipelines.Stats, x []float32, n int, l schedule.Level, _ pipelines.Cond, _ float64, x0, eps []float32) error {
	v, d := g.variance(l), len(g.mu)
	x, x0, eps = x[:n*d], x0[:n*d], eps[:n*d]
	for i, xi := range x {
		eps[i] = float32(l.Sigma * (float64(xi) - l.Alpha*float64(g.mu[i%d])) / v)
	}
	pipelines.ToX0Eps(pipelines.PredictEpsilon, l, x, eps, x0, eps)
	return nil
}

func (g gaussPipeline) Decode(_ context.Context, _ *pipelines.Stats, x []float32, n int, dst pixels.Images) error {
	copy(dst.Pix, x[:n*len(g.mu)])
	return nil
}

func (gaussPipeline) Stats() pipelines.Stats { return pipelines.Stats{} }
func (gaussPipeline) Close() error           { return nil }

// variance is V at level l.
func (g gaussPipeline) variance(l schedule.Level) float64 {
	return l.Alpha*l.Alpha*g.s*g.s + l.Sigma*l.Sigma
}

// posteriorMean is E[x0 | x] at level l for element j: mu + (Alpha s^2/V)(x - Alpha mu).
func (g gaussPipeline) posteriorMean(x float64, j int, l schedule.Level) float64 {
	mu := float64(g.mu[j%len(g.mu)])
	return mu + l.Alpha*g.s*g.s/g.variance(l)*(x-l.Alpha*mu)
}

// flow maps a state x at level from along the probability-flow ODE to level to, exactly:
// (x - Alpha mu)/sqrt(V) is invariant along it (the ODE dx/dlambda of these data is linear, and
// this quantity solves it; TestGaussianFlowIsInvariant checks it numerically).
func (g gaussPipeline) flow(x []float32, from, to schedule.Level) []float64 {
	out := make([]float64, len(x))
	q := math.Sqrt(g.variance(to) / g.variance(from))
	for i, xi := range x {
		mu := float64(g.mu[i%len(g.mu)])
		out[i] = to.Alpha*mu + q*(float64(xi)-from.Alpha*mu)
	}
	return out
}

// exactEnd is where the exact flow takes x_T (at levels[0]) at the end of the grid. A grid that
// ends on clean data ends with a step onto the model's prediction (every deterministic rule
// lands on x0 there), so its exact end is the flow to the last noisy level followed by
// E[x0 | x] there.
func (g gaussPipeline) exactEnd(xT []float32, levels []schedule.Level) []float64 {
	last := len(levels) - 1
	if !levels[last].Clean() {
		return g.flow(xT, levels[0], levels[last])
	}
	y := g.flow(xT, levels[0], levels[last-1])
	for i := range y {
		y[i] = g.posteriorMean(y[i], i, levels[last-1])
	}
	return y
}

// lambdaGrid is a grid uniform in lambda = log(Alpha/Sigma) from lo to hi, VP levels, ending on
// a noisy level: DPM-Solver's logSNR spacing, on which every step has the same h.
func lambdaGrid(lo, hi float64) func(n int) ([]schedule.Level, error) {
	return func(n int) ([]schedule.Level, error) {
		levels := make([]schedule.Level, n+1)
		for i := range levels {
			l := lo + (hi-lo)*float64(i)/float64(n)
			a := 1 / math.Sqrt(1+math.Exp(-2*l))
			levels[i] = schedule.Level{Time: float64(n - i), Alpha: a, Sigma: a * math.Exp(-l)}
		}
		return levels, nil
	}
}

// odeError runs a deterministic rule for steps steps (2 images of 4 particles, 16 elements each:
// 128 trajectories) and returns the largest absolute difference between a final state and the
// exact end of the flow from the same x_T.
func odeError(t *testing.T, g gaussPipeline, rule schedule.Rule, steps int) float64 {
	t.Helper()
	res, err := sampler.Run(context.Background(), g, sampler.Config{Steps: steps, Rule: rule, Images: 2, Particles: 4, Seed: 7, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Trajectories
	var worst float64
	for row := range tr.Rows {
		want := g.exactEnd(tr.State(0, row), tr.Levels)
		for i, v := range tr.State(tr.Steps, row) {
			worst = max(worst, math.Abs(float64(v)-want[i]))
		}
	}
	return worst
}

// TestGaussianFlowIsInvariant checks the closed form the trajectory tests stand on, without any
// sampler code: the probability-flow ODE in k-diffusion's variables, y = x/Alpha and
// sigma = Sigma/Alpha = exp(-lambda), is dy/dsigma = (y - x0(y))/sigma, that is
// dy/dlambda = x0(y) - y; integrated with classical Runge-Kutta in 4000 steps over SD's range
// (t = 981 to abar_0) it lands within 1e-9 of flow.
func TestGaussianFlowIsInvariant(t *testing.T) {
	g := newGauss(3, 0.5, false)
	levels := discreteLevels(t, schedule.DefaultSD(), 50)
	from, to := levels[0], levels[len(levels)-1]
	lo, hi := math.Log(from.Alpha/from.Sigma), math.Log(to.Alpha/to.Sigma)
	at := func(lambda float64) schedule.Level {
		a := 1 / math.Sqrt(1+math.Exp(-2*lambda))
		return schedule.Level{Alpha: a, Sigma: a * math.Exp(-lambda)}
	}
	xT := []float32{-1.5, 0.25, 2}
	want := g.flow(xT, from, to)
	for j := range xT {
		dy := func(lambda, y float64) float64 {
			l := at(lambda)
			return g.posteriorMean(l.Alpha*y, j, l) - y
		}
		const n = 4000
		h := (hi - lo) / n
		y := float64(xT[j]) / from.Alpha
		for i := range n {
			lam := lo + float64(i)*h
			k1 := dy(lam, y)
			k2 := dy(lam+h/2, y+h/2*k1)
			k3 := dy(lam+h/2, y+h/2*k2)
			k4 := dy(lam+h, y+h*k3)
			y += h / 6 * (k1 + 2*k2 + 2*k3 + k4)
		}
		if got := y * to.Alpha; math.Abs(got-want[j]) > 1e-9 {
			t.Errorf("element %d: Runge-Kutta %.12f, closed form %.12f", j, got, want[j])
		}
	}
}

func discreteLevels(t *testing.T, d schedule.Discrete, n int) []schedule.Level {
	t.Helper()
	levels, err := d.Levels(n)
	if err != nil {
		t.Fatal(err)
	}
	return levels
}

// TestGaussianTrajectoriesReachTheFlow is the acceptance test of the deterministic samplers on
// Stable Diffusion 1.5's grids: each full 50-step trajectory, driven through Run by the exact
// epsilon of Gaussian data (s = 0.5, means in [-1, 1]), ends within a stated distance of the
// exact end of the probability-flow ODE from its own x_T, and that distance is the sampler's
// discretisation error: doubling the steps shrinks it by the sampler's order.
//
// Measured (largest error over 128 trajectories of 16 elements; the states' spread is about
// 0.5 * 3 at the extremes):
//
//	rule      grid                 50 steps  100 steps  ratio
//	ddim      SD DDIM (leading)    0.063     0.033      1.92
//	euler     SD Euler (leading)   0.0625    0.032      1.94
//	dpm++2m   SD Euler (leading)   0.041     0.014      2.90
//
// The tolerances are these errors plus 25%. DDIM and Euler are first order (ratio 2, checked
// within 1.7..2.3). DPM-Solver++(2M) is second order, but SD's leading grid is coarse in lambda
// at its clean end (at 50 steps its last noisy step spans lambda 1.96 to 3.19, where DPM++'s
// error grows from 0.0002 to 0.04), so on this grid its ratio only approaches 4 (2.5, 2.9, 3.3,
// 5.2 from 25 to 400 steps); it must beat first order (ratio >= 2.5) here, and
// TestGaussianSolverOrder shows the clean 4 on a grid uniform in lambda.
func TestGaussianTrajectoriesReachTheFlow(t *testing.T) {
	for _, c := range []struct {
		rule           schedule.Rule
		euler          bool
		tol            float64
		minRat, maxRat float64
	}{
		{schedule.DDIMRule, false, 0.08, 1.7, 2.3},
		{schedule.EulerRule, true, 0.08, 1.7, 2.3},
		{schedule.DPMpp2MRule, true, 0.052, 2.5, 4.5},
	} {
		g := newGauss(16, 0.5, c.euler)
		e50, e100 := odeError(t, g, c.rule, 50), odeError(t, g, c.rule, 100)
		t.Logf("%-8s euler grid %-5v: error %.3g at 50 steps, %.3g at 100: ratio %.2f", c.rule, c.euler, e50, e100, e50/e100)
		if e50 > c.tol {
			t.Errorf("%s: 50-step trajectory ends %.3g from the exact flow, want <= %v", c.rule, e50, c.tol)
		}
		if r := e50 / e100; r < c.minRat || r > c.maxRat {
			t.Errorf("%s: error ratio 50/100 steps %.2f, want %v..%v", c.rule, r, c.minRat, c.maxRat)
		}
	}
}

// TestGaussianSolverOrder measures each deterministic rule's order on a grid uniform in lambda
// (from -2.5 to 3.5, about SD's range, ending on a noisy level so no step lands on clean data).
// Halving the step divides the error by 2^order. Measured for 25 -> 50 -> 100 -> 200 steps:
// ddim 1.97, 1.99, 1.99; dpm++2m 3.91, 3.98, 4.02 (errors 0.0047, 0.0012, 0.0003, 0.00007,
// against DDIM's 0.080 ... 0.010). Tolerance: ratios within 1.8..2.2 and 3.6..4.4.
func TestGaussianSolverOrder(t *testing.T) {
	g := newGauss(16, 0.5, false)
	g.grid = lambdaGrid(-2.5, 3.5)
	for _, c := range []struct {
		rule     schedule.Rule
		lo, hi   float64
		errAt100 float64
	}{
		{schedule.DDIMRule, 1.8, 2.2, 0.025},
		{schedule.DPMpp2MRule, 3.6, 4.4, 0.0004},
	} {
		prev := odeError(t, g, c.rule, 25)
		for _, n := range []int{50, 100, 200} {
			e := odeError(t, g, c.rule, n)
			t.Logf("%-8s %3d steps: error %.3g, ratio %.2f", c.rule, n, e, prev/e)
			if r := prev / e; r < c.lo || r > c.hi {
				t.Errorf("%s: error ratio %d/%d steps %.2f, want %v..%v", c.rule, n/2, n, r, c.lo, c.hi)
			}
			if n == 100 && e > c.errAt100 {
				t.Errorf("%s: error %.3g at 100 steps, want <= %v", c.rule, e, c.errAt100)
			}
			prev = e
		}
	}
}

// kdiffDPMpp2M is an independent DPM-Solver++(2M): k-diffusion's sample_dpmpp_2m in float64, in
// its own variables (y = x/Alpha, sigma = Sigma/Alpha, t = -log sigma), with the exact
// posterior mean as denoiser, plus diffusers' lower_order_final (a first-order last step when
// scheduleSteps, the length of the whole schedule, is below 15). It returns where x_T (at
// levels[0]) ends.
func kdiffDPMpp2M(g gaussPipeline, xT []float32, levels []schedule.Level, scheduleSteps int) []float64 {
	n := len(levels) - 1
	sigma := func(i int) float64 { return levels[i].Sigma / levels[i].Alpha }
	tOf := func(s float64) float64 { return -math.Log(s) }
	out := make([]float64, len(xT))
	for j := range xT {
		y := float64(xT[j]) / levels[0].Alpha
		var old float64
		for i := range n {
			l := levels[i]
			denoised := g.posteriorMean(l.Alpha*y, j, l)
			s, next := sigma(i), sigma(i+1)
			h := tOf(next) - tOf(s)
			if i == 0 || next == 0 || (i == n-1 && scheduleSteps < 15) {
				y = next/s*y - math.Expm1(-h)*denoised
			} else {
				r := (tOf(s) - tOf(sigma(i-1))) / h
				d := (1+1/(2*r))*denoised - 1/(2*r)*old
				y = next/s*y - math.Expm1(-h)*d
			}
			old = denoised
		}
		out[j] = y * levels[n].Alpha
	}
	return out
}

// TestDPMpp2MRunMatchesKDiffusion runs dpm++2m through Run (the multistep memory in the
// population, the order chosen per step) and compares every final state with kdiffDPMpp2M from
// the same recorded x_T: on both SD grids, with 10 steps (first order at the last step,
// lower_order_final) and 20, and image-to-image (whose first step is first order too, and whose
// lower_order_final counts the whole schedule). Largest difference measured: 5e-7 (float32
// rounding); the tolerance is 5e-6. Ignoring lower_order_final moves the 10-step DDIM-grid
// results by 0.008, so the test tells the orders apart.
func TestDPMpp2MRunMatchesKDiffusion(t *testing.T) {
	const tol = 5e-6
	for _, c := range []struct {
		euler    bool
		steps    int
		strength float64
	}{{false, 10, 0}, {false, 20, 0}, {true, 10, 0}, {true, 20, 0}, {false, 20, 0.6}, {false, 10, 0.8}} {
		g := newGauss(16, 0.5, c.euler)
		cfg := sampler.Config{Steps: c.steps, Rule: schedule.DPMpp2MRule, Images: 2, Particles: 2, Seed: 3, Record: true}
		if c.strength > 0 {
			cfg.Init, cfg.Strength = g.mu, c.strength
		}
		res, err := sampler.Run(context.Background(), g, cfg)
		if err != nil {
			t.Fatal(err)
		}
		tr := res.Trajectories
		var worst, orders float64
		for row := range tr.Rows {
			want := kdiffDPMpp2M(g, tr.State(0, row), tr.Levels, c.steps)
			other := kdiffDPMpp2M(g, tr.State(0, row), tr.Levels, 1000) // never lower_order_final
			for i, v := range tr.State(tr.Steps, row) {
				worst = max(worst, math.Abs(float64(v)-want[i]))
				orders = max(orders, math.Abs(other[i]-want[i]))
			}
		}
		t.Logf("euler grid %-5v %d steps strength %.1f: %d steps walked, largest difference %.2g (lower_order_final changes %.2g)",
			c.euler, c.steps, c.strength, tr.Steps, worst, orders)
		if worst > tol {
			t.Errorf("euler grid %v, %d steps, strength %v: Run differs from k-diffusion's DPM++(2M) by %.3g, want <= %v", c.euler, c.steps, c.strength, worst, tol)
		}
	}
}

// TestDPMpp2MMemoryTravelsWithTheParticle: with SharedPrefix every slot of a group continues
// from slot 0's particle after step 5, through Population.Resample. DPM++(2M) is deterministic,
// so the slots' trajectories must then be identical bit for bit, which they are only if each
// slot's previous x0 (used by the second-order step 6) was copied with the state.
func TestDPMpp2MMemoryTravelsWithTheParticle(t *testing.T) {
	g := newGauss(16, 0.5, false)
	res, err := sampler.Run(context.Background(), g, sampler.Config{
		Steps: 20, Rule: schedule.DPMpp2MRule, Images: 2, Particles: 3, Seed: 5, SharedPrefix: 5, Record: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Trajectories
	for gr := range 2 {
		for k := 1; k < 3; k++ {
			row := gr*3 + k
			if slices.Equal(tr.State(4, row), tr.State(4, gr*3)) {
				t.Fatalf("group %d slot %d equals slot 0 before the shared prefix ends; the test would prove nothing", gr, k)
			}
			for s := 5; s <= tr.Steps; s++ {
				if !slices.Equal(tr.State(s, row), tr.State(s, gr*3)) {
					t.Fatalf("group %d slot %d departs from slot 0 at step %d after sharing its particle", gr, k, s)
				}
			}
		}
	}
}

// chainMoments follows a rule driven by the Gaussian's exact predictions in closed form: given
// x0 = mu + k (x - Alpha mu), k = Alpha s^2/V, each step is x' = slope*x + intercept + std*z, so
// the mean and variance of element j propagate exactly from x_T ~ N(0, 1) (Run's start). The
// steps are written from the papers in abar = Alpha^2, independently of rules.go:
//
//	ddpm (Ho et al. eq. 7): x' = sqrt(abar') beta/(1-abar) x0 + sqrt(alpha)(1-abar')/(1-abar) x
//	                        + sqrt((1-abar')/(1-abar) beta) z,  alpha = abar/abar', beta = 1-alpha
//	lcm:                    x' = sqrt(abar') x0 + sqrt(1-abar') z
func chainMoments(g gaussPipeline, rule schedule.Rule, levels []schedule.Level, j int) (mean, variance float64) {
	mu := float64(g.mu[j])
	mean, variance = 0, 1
	for i := range len(levels) - 1 {
		ab, abNext := levels[i].Alpha*levels[i].Alpha, levels[i+1].Alpha*levels[i+1].Alpha
		k := levels[i].Alpha * g.s * g.s / g.variance(levels[i])
		var cx0, cx, v float64
		switch rule {
		case schedule.DDPMRule:
			alpha := ab / abNext
			beta := 1 - alpha
			cx0 = math.Sqrt(abNext) * beta / (1 - ab)
			cx = math.Sqrt(alpha) * (1 - abNext) / (1 - ab)
			v = (1 - abNext) / (1 - ab) * beta
		case schedule.LCMRule:
			cx0, v = math.Sqrt(abNext), 1-abNext
		}
		slope := cx + cx0*k
		intercept := cx0 * (mu - k*levels[i].Alpha*mu)
		mean = slope*mean + intercept
		variance = slope*slope*variance + v
	}
	return mean, variance
}

// TestGaussianStochasticChains samples 4096 particles of 16 elements (65536 chains, seed 1)
// through Run with ddpm and lcm on SD's 50-step DDIM grid and checks the final states against
// the chain's exact moments (chainMoments): each element's sample mean within 5 standard errors,
// the pooled variance within 5 standard errors.
//
// Those moments differ from the data's marginal at the last level, N(Alpha mu, Alpha^2 s^2 +
// Sigma^2), for two known reasons: the run starts from N(0, 1) rather than N(Alpha mu, V) at
// t = 981, and a step driven by E[x0 | x] drops Var[x0 | x] (Bao et al. 2022, Analytic-DPM). The
// test states that gap too (it is computed, not sampled): ddpm's variance is 17.9% short (the
// 18% TestDDIMGaussianChains reports for DDIM with eta 1) and lcm's 56% short, since every LCM
// step draws all of the next level's noise afresh around a prediction that lacks Var[x0 | x];
// both chains' means are within 0.002 of Alpha mu. Tolerances: 20%, 60% and 0.01.
func TestGaussianStochasticChains(t *testing.T) {
	skipUnderRace(t)
	const (
		k      = 4096
		nSigma = 5
	)
	for _, c := range []struct {
		rule   schedule.Rule
		varGap float64
	}{{schedule.DDPMRule, 0.2}, {schedule.LCMRule, 0.6}} {
		g := newGauss(16, 0.5, false)
		res, err := sampler.Run(context.Background(), g, sampler.Config{Steps: 50, Rule: c.rule, Images: 1, Particles: k, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		levels, _ := g.Schedule(50)
		last := levels[len(levels)-1]
		d := len(g.mu)
		var pooled, chainVar, worstMean, worstData float64
		for j := range d {
			m, v := chainMoments(g, c.rule, levels, j)
			chainVar = v
			var sum float64
			for row := range k {
				sum += float64(res.All.Pix[row*d+j])
			}
			sm := sum / k
			for row := range k {
				e := float64(res.All.Pix[row*d+j]) - m
				pooled += e * e
			}
			if se := math.Sqrt(v / k); math.Abs(sm-m) > nSigma*se {
				t.Errorf("%s element %d: sample mean %.5f, chain's exact mean %.5f ± %.5f", c.rule, j, sm, m, nSigma*se)
			}
			worstMean = max(worstMean, math.Abs(sm-m)/math.Sqrt(v/k))
			worstData = max(worstData, math.Abs(m-last.Alpha*float64(g.mu[j])))
		}
		n := float64(k * d)
		pooled /= n
		se := chainVar * math.Sqrt(2/(n-1))
		dataVar := g.variance(last)
		t.Logf("%s: sample variance %.5f, chain's exact %.5f (±%.5f), data marginal %.5f (%.1f%% short); worst mean %.1f standard errors; chain mean within %.4f of Alpha mu",
			c.rule, pooled, chainVar, nSigma*se, dataVar, 100*(1-chainVar/dataVar), worstMean, worstData)
		if math.Abs(pooled-chainVar) > nSigma*se {
			t.Errorf("%s: sample variance %.5f, chain's exact %.5f ± %.5f", c.rule, pooled, chainVar, nSigma*se)
		}
		if gap := 1 - chainVar/dataVar; gap < 0 || gap > c.varGap {
			t.Errorf("%s: chain variance %.5f is %.1f%% short of the data marginal's %.5f, want 0..%v%%", c.rule, chainVar, 100*gap, dataVar, 100*c.varGap)
		}
		if worstData > 0.01 {
			t.Errorf("%s: chain mean %.4f from Alpha mu, want <= 0.01", c.rule, worstData)
		}
	}
}
