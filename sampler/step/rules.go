// Package step holds the step rules that package sampler runs: how a diffusion step goes from
// one noise level to the next, given a denoiser's predictions.
//
// The step rules are small pure functions in the manner of k-diffusion. Each takes the level a
// state is at, the cleaner level it steps to, and the denoiser's predictions x0 and eps
// (pipelines convert epsilon, v and flow outputs into both, so no rule branches on prediction
// type); it writes the step's mean into a buffer the caller owns and returns the step's standard
// deviation. The caller draws x' = mean + std*z with z ~ N(0, I), and [LogProb] gives the exact
// log-density of that draw, which fine-tuning trainers need. Rules keep no state between calls,
// so resampling particles cannot desynchronise them: the one multistep rule, DPM-Solver++(2M),
// is given the previous prediction by its caller, and the steering loop keeps each particle's
// in the particle population, where resampling copies it with the particle. [Take] runs the
// rule a [schedule.Rule] names.
//
// The package knows nothing of models, pipelines or ONNX Runtime, so it builds and tests
// without cgo (CGO_ENABLED=0).
package step

import (
	"fmt"
	"math"

	"github.com/fksteer/fksteer/schedule"
)

// Notation. Every rule steps from level `from` (DESIGN.md's t) to the cleaner level `to` (t').
// Where a symbol differs by model family, the VP symbol comes first and the flow symbol second.
//
//	code         DESIGN.md                 meaning
//	from.Alpha   sqrt(abar) ; 1-t          signal scale at t: x = Alpha*x0 + Sigma*eps
//	from.Sigma   sqrt(1-abar) ; t          noise scale at t
//	to.Alpha     sqrt(abar') ; 1-t'        signal scale at t'
//	to.Sigma     sqrt(1-abar') ; t'        noise scale at t'
//	x            x_t                       the current state
//	x0, eps      x0, eps ; x0, noise       the denoiser's predictions at x
//	mean, std    mean, sigma (DDIM)        the step's Gaussian: x' = mean + std*z
//	eta          eta                       0: deterministic; 1: as much fresh noise as DDPM
//	r            (none)                    Alpha*Sigma'/(Sigma*Alpha'): the share of t's
//	                                       noise-to-signal ratio left at t' (below 1)
//	sigma, next  sigma, sigma' (k-diff.)   Sigma/Alpha at t and t' (Euler ancestral)
//	a            noise_level (Flow-GRPO)   the SDE's noise scale
//	lambda       lambda (DPM-Solver)       log(Alpha/Sigma), the log signal-to-noise ratio;
//	                                       exp(-h) = r for h = lambda(to) - lambda(from)
//	prev         s1 (diffusers)            the level of the previous step's prediction
//	prevX0       m1 (diffusers)            the x0 predicted at prev (DPM-Solver++(2M))
//	h0, r0       h_0, r0 (diffusers)       lambda(from) - lambda(prev), and h0/h

// DDIM writes the mean of a generalised DDIM step (Song et al. 2021, eq. 12) from `from` to `to`
// into mean and returns its standard deviation s:
//
//	s    = eta * Sigma' * sqrt(1 - r^2),   r = Alpha*Sigma' / (Sigma*Alpha')
//	mean = Alpha'*x0 + sqrt(Sigma'^2 - s^2)*eps
//
// Whatever eta, x' = mean + s*z is Alpha'*x0 plus noise of total variance Sigma'^2 when eps is
// the true noise: the step keeps q(x_t' | x0), the marginals the model was trained on (Song et
// al., Theorem 1). With a predicted x0 that holds up to a discretisation error that shrinks with
// the step size (see the Gaussian tests).
//
// On VP levels (Alpha = sqrt(abar), Sigma = sqrt(1-abar)), r^2 = abar(1-abar')/((1-abar)abar'):
//
//	s^2 = eta^2 (1-abar') (1 - abar(1-abar')/((1-abar)abar'))
//	    = eta^2 (1-abar') (abar' - abar) / ((1-abar) abar')
//	    = (eta * sqrt((1-abar')/(1-abar)) * sqrt(1 - abar/abar'))^2,
//
// DESIGN.md's (and diffusers') DDIM sigma, with mean sqrt(abar') x0 + sqrt(1-abar'-sigma^2) eps.
// On flow levels (Alpha = 1-t, Sigma = t), r = (1-t)t'/(t(1-t')), so
// s = eta t' sqrt(1 - ((1-t)t'/(t(1-t')))^2) and mean = (1-t')x0 + sqrt(t'^2 - s^2) noise:
// DESIGN.md's marginal-preserving flow step. With eta = 0 that mean is (1-t')x0 + t' eps, which
// is x - (t-t')v, the Euler step of the flow ODE, because x = (1-t)x0 + t eps and v = eps - x0.
//
// When to is clean (Sigma' = 0) the mean is Alpha'*x0 and std is 0. A negative 1 - r^2 (a step
// toward more noise) counts as 0, and s is capped at Sigma', as k-diffusion caps sigma_up:
// eta above 1 would otherwise ask for more fresh noise than the level holds.
//
// from.Sigma and to.Alpha must be positive. mean, x0 and eps must have equal lengths; DDIM
// panics otherwise. It does not allocate.
func DDIM(mean, x0, eps []float32, from, to schedule.Level, eta float64) (std float64) {
	// 1. The fresh noise (Song et al. eq. 16, in (Alpha, Sigma) form).
	r := from.Alpha * to.Sigma / (from.Sigma * to.Alpha)
	s := min(eta*to.Sigma*math.Sqrt(max(0, 1-r*r)), to.Sigma)
	// 2. The mean: the predicted x0 brought to t', plus the share of the noise at t' that is
	// carried over from eps rather than drawn fresh.
	mix(mean, to.Alpha, x0, math.Sqrt(max(0, to.Sigma*to.Sigma-s*s)), eps)
	return s
}

// DDPM writes the mean of the DDPM posterior q(x' | x, x0) (Ho et al. 2020, eqs. 6-7) into mean
// and returns its standard deviation. It is derived for the Markov chain through these two
// levels in (Alpha, Sigma) form: going forward from t' to t scales the signal by
// a = Alpha/Alpha' and adds fresh noise of variance v = Sigma^2 - a^2 Sigma'^2, so Bayes' rule
// for Gaussians gives
//
//	var  = Sigma'^2 v / Sigma^2
//	mean = (a Sigma'^2 / Sigma^2) x + (Alpha' v / Sigma^2) x0
//
// On VP levels v = 1 - abar/abar', the beta of the whole step, and this is diffusers'
// DDPMScheduler with variance_type "fixed_small". It equals DDIM with eta = 1 when
// eps = (x - Alpha x0)/Sigma; taking x instead of eps, it stays the true posterior when x0 has
// been changed after prediction (clipped, say).
//
// from.Sigma and to.Alpha must be positive. mean, x and x0 must have equal lengths; DDPM panics
// otherwise. It does not allocate.
func DDPM(mean, x, x0 []float32, from, to schedule.Level) (std float64) {
	// 1. The forward kernel from t' to t: x = a x' + sqrt(v) n.
	a := from.Alpha / to.Alpha
	v := max(0, from.Sigma*from.Sigma-a*a*to.Sigma*to.Sigma)
	// 2. The posterior of x' given x and x0.
	s2, next2 := from.Sigma*from.Sigma, to.Sigma*to.Sigma
	mix(mean, a*next2/s2, x, to.Alpha*v/s2, x0)
	return math.Sqrt(next2 * v / s2)
}

// EulerAncestral writes the mean of k-diffusion's Euler ancestral step (sample_euler_ancestral)
// into mean and returns its standard deviation. k-diffusion works in sigma = Sigma/Alpha, where
// x/Alpha = x0 + sigma*eps: it splits the next level into sigma_down, reached deterministically,
// and sigma_up, drawn fresh (ancestralSplit), takes the Euler step
// x/Alpha + (sigma_down - sigma)*eps = x0 + sigma_down*eps and adds sigma_up*z. Scaled back to
// x by Alpha':
//
//	mean = Alpha' (x0 + sigma_down*eps),   std = Alpha' sigma_up
//
// Since sigma'/sigma = r, Alpha'*sigma_up is DDIM's s and Alpha'*sigma_down its
// sqrt(Sigma'^2 - s^2): Euler ancestral is DDIM with the same eta, step for step, as the tests
// check. It is here so that k-diffusion's sampler can be named and compared.
//
// from.Sigma and to.Alpha must be positive (from.Alpha = 0, pure noise, is fine). mean, x0 and
// eps must have equal lengths; EulerAncestral panics otherwise. It does not allocate.
func EulerAncestral(mean, x0, eps []float32, from, to schedule.Level, eta float64) (std float64) {
	// 1. To k-diffusion's sigma.
	sigma, next := from.Sigma/from.Alpha, to.Sigma/to.Alpha
	// 2. Split the next level into the deterministic part and the fresh noise.
	down, up := ancestralSplit(sigma, next, eta)
	// 3. The Euler step to sigma_down, in x-space.
	mix(mean, to.Alpha, x0, to.Alpha*down, eps)
	return to.Alpha * up
}

// ancestralSplit is k-diffusion's get_ancestral_step: it splits the noise level next of the coming
// state into down, carried from the current noise, and up, drawn fresh, with
// down^2 + up^2 = next^2:
//
//	up   = min(next, eta * sqrt(next^2 (sigma^2 - next^2) / sigma^2))
//	down = sqrt(next^2 - up^2)
//
// up is computed as eta*next*sqrt(1 - (next/sigma)^2) so that sigma = +Inf (pure noise) works.
func ancestralSplit(sigma, next, eta float64) (down, up float64) {
	if eta == 0 {
		return next, 0
	}
	q := next / sigma
	up = min(next, eta*next*math.Sqrt(max(0, 1-q*q)))
	return math.Sqrt(next*next - up*up), up
}

// FlowSDE writes the mean of Flow-GRPO's SDE step (Liu et al. 2025; sde_step_with_logprob with
// sde_type "sde") into mean and returns its standard deviation. It is valid only on
// rectified-flow levels, Alpha + Sigma = 1, with t = from.Sigma and t' = to.Sigma:
//
//	sigma_t = a sqrt(t / (1-t)),   dt = t' - t  (negative)
//	mean    = x + dt (v + sigma_t^2/(2t) eps),   v = eps - x0
//	std     = sigma_t sqrt(-dt)
//
// Flow-GRPO writes the mean with the velocity alone,
// x (1 + sigma_t^2 dt/(2t)) + v (1 + sigma_t^2 (1-t)/(2t)) dt; a flow's noise is eps = x + (1-t)v,
// so the two agree whenever the pipeline derived x0 and eps from v. a is Flow-GRPO's noise_level
// (0.7 there); a = 0 gives the Euler ODE step and std 0.
//
// At t = 1, the first level of every flow grid, t/(1-t) is infinite. Flow-GRPO puts its grid's
// second point sigmas[1] in place of t in 1-t there, and that point is where the first step
// goes, so FlowSDE uses 1-t': on Flow-GRPO's own grids the two agree exactly.
//
// The last step, onto t' = 0, is an SDE step like the others, as Flow-GRPO's sampler takes it:
// dt = -t, mean = x0 - (sigma_t^2/2) eps and std = sigma_t sqrt(t) = a t/sqrt(1-t) (0.0609 on
// the unshifted 12-step grid with a = 0.7), so the final sample keeps a little noise and the
// step has a log-probability. The rule FlowSDECleanRule lands that step on x0 instead.
//
// from.Sigma must be positive. mean, x, x0 and eps must have equal lengths; FlowSDE panics
// otherwise. It does not allocate.
func FlowSDE(mean, x, x0, eps []float32, from, to schedule.Level, a float64) (std float64) {
	mustMatch(mean, x, x0, eps)
	// 1. The SDE's noise scale at t, with Flow-GRPO's stand-in for 1-t at t = 1.
	t, next := from.Sigma, to.Sigma
	den := 1 - t
	if t == 1 {
		den = 1 - next
	}
	sigmaT := a * math.Sqrt(t/den)
	// 2. The Euler-Maruyama step of the reverse SDE: x + dt*(v + sigma_t^2/(2t)*eps).
	dt := next - t
	c := 1 + sigmaT*sigmaT/(2*t) // the weight of eps in v + sigma_t^2/(2t) eps
	x, x0, eps = x[:len(mean)], x0[:len(mean)], eps[:len(mean)]
	for i := range mean {
		mean[i] = float32(float64(x[i]) + dt*(c*float64(eps[i])-float64(x0[i])))
	}
	return sigmaT * math.Sqrt(max(0, -dt))
}

// DPMSolver2M writes the step of DPM-Solver++(2M) (Lu et al. 2022, algorithm 2) into mean and
// returns 0: it is an ODE solver and draws no noise. It is diffusers'
// DPMSolverMultistepScheduler with algorithm_type "dpmsolver++", solver_order 2 and solver_type
// "midpoint", written in (Alpha, Sigma), with h = lambda(to) - lambda(from):
//
//	first order  (prev nil):  mean = (Sigma'/Sigma) x - Alpha' (exp(-h) - 1) x0
//	second order (prev set):  D0 = x0,  D1 = (x0 - prevX0)/r0,  r0 = h0/h,
//	                          mean = (Sigma'/Sigma) x - Alpha' (exp(-h) - 1) (D0 + D1/2)
//
// where prevX0 is the x0 predicted at the level prev of the previous step (diffusers' m1,
// model_outputs[-2]) and h0 = lambda(from) - lambda(prev). exp(-h) is computed as
// r = Alpha*Sigma'/(Sigma*Alpha'), so a step from pure noise (Alpha = 0) or onto clean data
// (Sigma' = 0) needs no infinite lambda. The first-order step is DDIM with eta = 0 when
// eps = (x - Alpha x0)/Sigma. k-diffusion's sample_dpmpp_2m is the same solver in
// sigma = Sigma/Alpha (x/Alpha for x), as the tests check.
//
// The rule keeps no memory: the caller passes the previous prediction (the steering loop keeps
// each particle's in the population, so resampling copies it with the particle) and decides the
// order. sampler.Run takes the first-order step at a run's first step, onto a clean level (diffusers'
// final_sigmas_type "zero"), and at the last step of a schedule of fewer than 15 steps
// (lower_order_final); the second-order step everywhere else. When to is clean DPMSolver2M is
// first order whatever prev says and writes mean = Alpha'*x0, the prediction itself.
//
// from.Sigma and to.Alpha must be positive. mean, x and x0 must have equal lengths, and prevX0
// too when prev is not nil; DPMSolver2M panics otherwise. It does not allocate.
func DPMSolver2M(mean, x, x0, prevX0 []float32, prev *schedule.Level, from, to schedule.Level) (std float64) {
	// 1. exp(-h) and the first-order coefficients: mean = c*x + b*x0.
	r := from.Alpha * to.Sigma / (from.Sigma * to.Alpha)
	c, b := to.Sigma/from.Sigma, to.Alpha*(1-r)
	if prev == nil || to.Clean() {
		mix(mean, c, x, b, x0)
		return 0
	}
	// 2. The second-order correction: D0 + D1/2 = (1 + 1/(2 r0)) x0 - (1/(2 r0)) prevX0, with
	// r0 = h0/h = log(rPrev)/log(r), rPrev = exp(-h0). A previous level of pure noise
	// (rPrev = 0) gives r0 = +Inf and the first-order step.
	mustMatch(mean, x, x0, prevX0)
	rPrev := prev.Alpha * from.Sigma / (prev.Sigma * from.Alpha)
	half := 0.5 * math.Log(r) / math.Log(rPrev) // 1/(2 r0)
	x, x0, prevX0 = x[:len(mean)], x0[:len(mean)], prevX0[:len(mean)]
	for i := range mean {
		d := (1+half)*float64(x0[i]) - half*float64(prevX0[i])
		mean[i] = float32(c*float64(x[i]) + b*d)
	}
	return 0
}

// LCM writes the mean of a Latent Consistency Model step (Luo et al. 2023; diffusers'
// LCMScheduler) into mean and returns its standard deviation: the consistency function's
// prediction x0 brought to t' with the whole of that level's noise drawn fresh,
//
//	mean = Alpha'*x0,   std = Sigma'
//
// so x' = Alpha'*x0 + Sigma'*z, which is q(x_t' | x0) for the predicted x0. The consistency
// boundary condition (x0 = c_skip x + c_out f(x)) belongs to the pipeline, which applies it
// before LCM sees x0. Onto a clean level std is 0 and the mean is the prediction. (diffusers
// returns the prediction at the last step whatever level it was aimed at; a pipeline matches
// it by giving LCM a grid that ends on clean data.)
//
// mean and x0 must have equal lengths; LCM panics otherwise. It does not allocate.
func LCM(mean, x0 []float32, to schedule.Level) (std float64) {
	mustMatch(mean, x0)
	a := to.Alpha
	for i, v := range x0[:len(mean)] {
		mean[i] = float32(a * float64(v))
	}
	return to.Sigma
}

// mix writes dst[i] = a*x[i] + b*y[i], computed in float64.
func mix(dst []float32, a float64, x []float32, b float64, y []float32) {
	mustMatch(dst, x, y)
	x, y = x[:len(dst)], y[:len(dst)]
	for i := range dst {
		dst[i] = float32(a*float64(x[i]) + b*float64(y[i]))
	}
}

// mustMatch panics unless every input has the mean's length: a mismatch is a bug in the caller,
// and a step written over part of a batch would hide it.
func mustMatch(mean []float32, inputs ...[]float32) {
	for _, in := range inputs {
		if len(in) != len(mean) {
			panic(fmt.Sprintf("step: input of length %d for a mean of length %d", len(in), len(mean)))
		}
	}
}
