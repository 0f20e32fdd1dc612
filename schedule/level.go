// Package schedule describes where a diffusion model's states sit between data and noise, and
// builds the grids of such points that samplers walk along.
//
// Every model family fksteer runs is written in one form, x_t = Alpha*x0 + Sigma*eps:
// variance-preserving discrete-time models (DDPM, Stable Diffusion) have Alpha = sqrt(abar_t) and
// Sigma = sqrt(1-abar_t); rectified flows have Alpha = 1-t and Sigma = t. Step rules and prediction
// conversions are written once against (Alpha, Sigma) and so serve both.
//
// A grid is a []Level, noisiest first, and a sampler steps from each level to the next.
// [Scheduler] reads a diffusers scheduler_config.json ([LoadScheduler]) and builds the exact grid
// of each scheduler family fksteer reproduces (DDIM, DDPM, PNDM, Euler, Euler ancestral,
// DPM-Solver++ 2M, LCM) with [Scheduler.Levels], naming the step rule that walks it
// ([Scheduler.Rule]; [Rule] is the one vocabulary of step rules, which package sampler/step runs
// and the CLI's --sampler parses). Underneath, [Discrete] holds a discrete-time model's noise schedule
// ([Discrete.Levels] for DDIM-style samplers, [Discrete.EulerLevels] for sigma-space ones such
// as Euler and Karras grids); [Flow] builds rectified-flow grids. The beta
// tables and timestep spacings behind them ([Betas], [AlphasCumprod], [Timesteps]) follow
// diffusers exactly (in float64 where diffusers rounds to float32), because a model only
// denoises well at the levels it was trained on.
//
// This package knows nothing about models, particles or rewards.
package schedule

// Level is one point on a noise schedule: a state there is x = Alpha*x0 + Sigma*eps.
// Time is the value the denoiser is given for that point (a training timestep such as 981, or a
// continuous time such as 0.98), in the model's own convention.
type Level struct {
	Time  float64
	Alpha float64
	Sigma float64
}

// Clean reports whether the level is noise-free data (Sigma == 0): the end of every schedule.
func (l Level) Clean() bool { return l.Sigma == 0 }
