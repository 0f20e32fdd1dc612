package schedule

import (
	"fmt"
	"math"
	"slices"
)

// Discrete describes a discrete-time variance-preserving model's noise schedule and how a
// sampler walks it: the fields of a diffusers scheduler_config.json, with the keys named beside
// each. The zero value is not useful; start from [DefaultSD] or parse the model's config.
type Discrete struct {
	TrainSteps    int          // num_train_timesteps: T, the number of training timesteps
	BetaStart     float64      // beta_start
	BetaEnd       float64      // beta_end
	BetaSchedule  BetaSchedule // beta_schedule
	Spacing       Spacing      // timestep_spacing
	StepsOffset   int          // steps_offset; applies to Leading spacing only
	SetAlphaToOne bool         // set_alpha_to_one: whether DDIM's last step lands on clean data
	Karras        bool         // use_karras_sigmas

	// TrainedBetas (trained_betas), when not nil, are the model's betas as listed in its config;
	// they replace BetaStart, BetaEnd and BetaSchedule, as in diffusers, and must number TrainSteps.
	TrainedBetas []float64
	// RescaleZeroSNR (rescale_betas_zero_snr) rescales the betas so that the last training
	// timestep is pure noise, abar_{T-1} = 0 (Lin et al. 2024, "Common Diffusion Noise Schedules
	// and Sampling Steps Are Flawed"), exactly as diffusers' rescale_zero_terminal_snr does.
	RescaleZeroSNR bool
}

// DefaultSD returns Stable Diffusion 1.5's schedule: 1000 training steps, scaled_linear betas
// from 0.00085 to 0.012, leading spacing with steps offset 1, and set_alpha_to_one false.
func DefaultSD() Discrete {
	return Discrete{
		TrainSteps:   1000,
		BetaStart:    0.00085,
		BetaEnd:      0.012,
		BetaSchedule: ScaledLinear,
		Spacing:      Leading,
		StepsOffset:  1,
	}
}

// AlphasCumprod returns the schedule's abar_t for t = 0..TrainSteps-1: from TrainedBetas if set,
// otherwise from [Betas], then rescaled to zero terminal SNR if RescaleZeroSNR is set. With
// RescaleZeroSNR the last value is exactly 0.
func (d Discrete) AlphasCumprod() ([]float64, error) {
	var betas []float64
	if d.TrainedBetas != nil {
		if len(d.TrainedBetas) != d.TrainSteps {
			return nil, fmt.Errorf("schedule: %d trained betas for %d training steps: want one per step",
				len(d.TrainedBetas), d.TrainSteps)
		}
		for i, b := range d.TrainedBetas {
			if !(b >= 0 && b < 1) { // written so that NaN fails too
				return nil, fmt.Errorf("schedule: trained beta %d is %v: want [0, 1)", i, b)
			}
		}
		betas = slices.Clone(d.TrainedBetas)
	} else {
		var err error
		if betas, err = Betas(d.BetaSchedule, d.TrainSteps, d.BetaStart, d.BetaEnd); err != nil {
			return nil, err
		}
	}
	if d.RescaleZeroSNR {
		var err error
		if betas, err = rescaleZeroTerminalSNR(betas); err != nil {
			return nil, err
		}
	}
	return AlphasCumprod(betas), nil
}

// sigmaAlphasCumprod is AlphasCumprod as diffusers' sigma-space schedulers (Euler, Euler
// ancestral, DPM-Solver) hold it: with zero terminal SNR the last abar is 2^-24 instead of 0, "close
// to 0 without being 0 so first sigma is not inf" (their comment; float16's smallest subnormal).
// DDIM, DDPM and LCM keep the 0.
// Betas that drive abar to 0 (or below 1/MaxFloat64) before the last timestep are an error:
// sigma would be infinite and every level built from it NaN.
func (d Discrete) sigmaAlphasCumprod() ([]float64, error) {
	abar, err := d.AlphasCumprod()
	if err != nil {
		return nil, err
	}
	if d.RescaleZeroSNR {
		abar[len(abar)-1] = zeroSNRAbar
	}
	for t, a := range abar {
		if math.IsInf((1-a)/a, 0) {
			return nil, fmt.Errorf("schedule: alphas_cumprod reaches %v at timestep %d: these betas leave no signal (sigma = sqrt((1-abar)/abar) is infinite)", a, t)
		}
	}
	return abar, nil
}

// zeroSNRAbar is the 2^-24 that sigma-space schedulers put in place of a zero last abar.
const zeroSNRAbar = 0x1p-24

// Levels returns the n+1 levels that n DDIM-style steps walk through, noisiest first. Level i
// (i < n) sits at the i-th timestep t of [Timesteps]: Time = t, Alpha = sqrt(abar_t),
// Sigma = sqrt(1-abar_t). The last level is where DDIM's final step lands, abar' = 1 if
// SetAlphaToOne (clean data) and abar_0 otherwise (as SD 1.5 does); its Time is -1, because the
// denoiser is never called there.
//
// Each step goes from one level to the next. For leading spacing that is exactly diffusers'
// DDIM, whose step goes from t to t - T/n. For trailing and linspace spacing diffusers' DDIM
// still steps to t - T/n, which can miss the next timestep it will itself evaluate (diffusers
// issues #9261 and #12633); stepping level to level keeps the chain consistent.
//
// With Karras set, Levels returns [Discrete.EulerLevels] instead: Karras sigmas are a grid in
// sigma = Sigma/Alpha, and diffusers' Euler scheduler is the reference for how it is built.
func (d Discrete) Levels(n int) ([]Level, error) {
	if d.Karras {
		return d.EulerLevels(n)
	}
	abar, err := d.AlphasCumprod()
	if err != nil {
		return nil, err
	}
	ts, err := Timesteps(d.Spacing, d.TrainSteps, n, d.StepsOffset)
	if err != nil {
		return nil, err
	}
	levels := make([]Level, 0, n+1)
	for _, t := range ts {
		levels = append(levels, vpLevel(float64(t), abar[t]))
	}
	final := abar[0]
	if d.SetAlphaToOne {
		final = 1
	}
	return append(levels, vpLevel(-1, final)), nil
}

// EulerLevels returns the n+1 levels of diffusers' EulerDiscreteScheduler (Euler ancestral's
// grid is the same), noisiest first. These samplers
// work with sigma = Sigma/Alpha = sqrt((1-abar)/abar), x/Alpha = x0 + sigma*eps, and differ from
// [Discrete.Levels] in two ways:
//
//   - sigma at each timestep is interpolated linearly from the training table, and for linspace
//     spacing the timesteps keep their fractions (diffusers does not round them for Euler);
//   - the grid ends at sigma = 0, clean data, whatever SetAlphaToOne says.
//
// With Karras set, the n sigmas are instead Karras et al.'s (2022) rho = 7 spacing between the
// first and last interpolated sigmas (diffusers' _convert_to_karras), and each one's Time is the
// fractional timestep whose log-sigma it matches (diffusers' _sigma_to_t). k-diffusion's
// get_sigmas_karras is the same formula; callers there usually pass the model's full range,
// sigma(0)..sigma(T-1), which equals ours for linspace spacing.
//
// Each level has Alpha = 1/sqrt(1+sigma^2) and Sigma = sigma/sqrt(1+sigma^2); the last has
// Time -1, because the denoiser is never called there. With RescaleZeroSNR the last training
// abar is taken as 2^-24 rather than 0, as diffusers' Euler does, so that sigma stays finite.
func (d Discrete) EulerLevels(n int) ([]Level, error) {
	abar, err := d.sigmaAlphasCumprod()
	if err != nil {
		return nil, err
	}
	ts, err := spacedTimes(d.Spacing, d.TrainSteps, n, d.StepsOffset, false)
	if err != nil {
		return nil, err
	}
	table := make([]float64, len(abar)) // sigma per training timestep
	for t, a := range abar {
		table[t] = math.Sqrt((1 - a) / a)
	}
	sigmas := make([]float64, n)
	for i, t := range ts {
		sigmas[i] = interp(t, table)
	}
	if d.Karras {
		logTable := make([]float64, len(table))
		for t, s := range table {
			logTable[t] = math.Log(s)
		}
		sigmas = karrasSigmas(n, sigmas[n-1], sigmas[0])
		for i, s := range sigmas {
			ts[i] = sigmaToT(s, logTable)
		}
	}
	levels := make([]Level, 0, n+1)
	for i, s := range sigmas {
		levels = append(levels, sigmaLevel(ts[i], s))
	}
	return append(levels, sigmaLevel(-1, 0)), nil
}

// vpLevel is the level of a variance-preserving state with signal fraction abar.
func vpLevel(time, abar float64) Level {
	return Level{Time: time, Alpha: math.Sqrt(abar), Sigma: math.Sqrt(1 - abar)}
}

// sigmaLevel is the variance-preserving level whose noise-to-signal ratio Sigma/Alpha is sigma.
func sigmaLevel(time, sigma float64) Level {
	alpha := 1 / math.Sqrt(1+sigma*sigma)
	return Level{Time: time, Alpha: alpha, Sigma: sigma * alpha}
}

// interp is numpy.interp(t, arange(len(table)), table): linear between neighbouring entries,
// clamped at the ends.
func interp(t float64, table []float64) float64 {
	last := len(table) - 1
	switch {
	case t <= 0:
		return table[0]
	case t >= float64(last):
		return table[last]
	}
	i := int(t)
	w := t - float64(i)
	return (1-w)*table[i] + w*table[i+1]
}
