package schedule

import (
	"fmt"
	"math"

	"github.com/fksteer/fksteer/internal/enum"
)

// BetaSchedule names how a discrete-time model's per-step noise variances beta_t are laid out
// over its training timesteps. The values are the strings diffusers writes in
// scheduler_config.json ("beta_schedule").
type BetaSchedule string

const (
	// Linear spaces beta linearly from BetaStart to BetaEnd (the DDPM paper).
	Linear BetaSchedule = "linear"
	// ScaledLinear spaces sqrt(beta) linearly and squares it (Stable Diffusion 1.x/2.x, SDXL).
	ScaledLinear BetaSchedule = "scaled_linear"
	// SquaredCosCapV2 is the cosine schedule of Nichol and Dhariwal (2021), each beta capped at
	// 0.999; it ignores BetaStart and BetaEnd.
	SquaredCosCapV2 BetaSchedule = "squaredcos_cap_v2"
)

// maxCosineBeta caps the cosine schedule's last betas, which would otherwise reach 1 and make
// abar exactly 0 (diffusers' betas_for_alpha_bar max_beta).
const maxCosineBeta = 0.999

// MaxTrainSteps bounds the training timesteps of a computed schedule: real models use 1000 (a
// few 4000), and a config that asks for 2^31 would otherwise allocate 16 GiB per table.
const MaxTrainSteps = 100_000

// ParseBetaSchedule turns a scheduler_config.json "beta_schedule" value into a BetaSchedule.
func ParseBetaSchedule(s string) (BetaSchedule, error) {
	return enum.Parse("beta schedule", s, betaSchedules...)
}

var betaSchedules = []BetaSchedule{Linear, ScaledLinear, SquaredCosCapV2}

// Betas returns the trainSteps noise variances beta_0..beta_{T-1} of a discrete-time model,
// computed as diffusers computes them:
//
//	linear:            beta = linspace(betaStart, betaEnd, T)
//	scaled_linear:     beta = linspace(sqrt(betaStart), sqrt(betaEnd), T)^2
//	squaredcos_cap_v2: beta_i = min(1 - f((i+1)/T)/f(i/T), 0.999), f(u) = cos((u+0.008)/1.008 * pi/2)^2
//
// linspace is numpy's (start + i*step, the last value exactly the end). diffusers builds these in
// float32 with torch; we stay in float64 throughout, as the original CompVis code did before its
// final cast, so values differ from diffusers' only by float32 rounding.
// betaStart and betaEnd must lie in [0, 1) for the linear schedules; trainSteps in 1..MaxTrainSteps.
func Betas(kind BetaSchedule, trainSteps int, betaStart, betaEnd float64) ([]float64, error) {
	if trainSteps <= 0 || trainSteps > MaxTrainSteps {
		return nil, fmt.Errorf("schedule: %d training steps: want 1..%d", trainSteps, MaxTrainSteps)
	}
	if err := enum.Check("beta schedule", kind, betaSchedules...); err != nil {
		return nil, err
	}
	if kind == SquaredCosCapV2 {
		return cosineBetas(trainSteps), nil
	}
	for _, b := range []float64{betaStart, betaEnd} {
		if !(b >= 0 && b < 1) { // written so that NaN fails too
			return nil, fmt.Errorf("schedule: beta %v out of range [0, 1)", b)
		}
	}
	if kind == Linear {
		return linspace(betaStart, betaEnd, trainSteps), nil
	}
	betas := linspace(math.Sqrt(betaStart), math.Sqrt(betaEnd), trainSteps)
	for i, b := range betas {
		betas[i] = b * b
	}
	return betas, nil
}

func cosineBetas(n int) []float64 {
	f := func(u float64) float64 {
		c := math.Cos((u + 0.008) / 1.008 * math.Pi / 2)
		return c * c
	}
	betas := make([]float64, n)
	for i := range betas {
		t1, t2 := float64(i)/float64(n), float64(i+1)/float64(n)
		betas[i] = math.Min(1-f(t2)/f(t1), maxCosineBeta)
	}
	return betas
}

// AlphasCumprod returns abar_t = prod_{s<=t} (1 - beta_s), the signal fraction of the variance at
// each training timestep: a state there is sqrt(abar_t)*x0 + sqrt(1-abar_t)*eps.
func AlphasCumprod(betas []float64) []float64 {
	abar := make([]float64, len(betas))
	p := 1.0
	for i, b := range betas {
		p *= 1 - b
		abar[i] = p
	}
	return abar
}

// linspace is numpy.linspace(start, stop, n): start + i*step, with the last value exactly stop and
// a single value being start.
func linspace(start, stop float64, n int) []float64 {
	y := make([]float64, n)
	if n == 1 {
		y[0] = start
		return y
	}
	step := (stop - start) / float64(n-1)
	for i := range y {
		y[i] = float64(i)*step + start
	}
	y[n-1] = stop
	return y
}

// rescaleZeroTerminalSNR is diffusers' rescale_zero_terminal_snr (Lin et al. 2024, Algorithm 1):
// shift sqrt(abar) so that its last value is 0, scale it so that its first value is unchanged, and
// turn the result back into betas. The last beta becomes 1, so abar_{T-1} is exactly 0.
func rescaleZeroTerminalSNR(betas []float64) ([]float64, error) {
	n := len(betas)
	if n < 2 {
		return nil, fmt.Errorf("schedule: rescale_betas_zero_snr needs at least 2 training steps, not %d", n)
	}
	sqrtAbar := AlphasCumprod(betas)
	for i, a := range sqrtAbar {
		sqrtAbar[i] = math.Sqrt(a)
	}
	first, last := sqrtAbar[0], sqrtAbar[n-1]
	if !(first > last) {
		return nil, fmt.Errorf("schedule: rescale_betas_zero_snr: abar does not fall from the first training step to the last")
	}
	scale := first / (first - last)
	out := make([]float64, n)
	prev := 0.0
	for i, s := range sqrtAbar {
		s = (s - last) * scale
		abar := s * s
		alpha := abar // alphas = abar[0], then abar[i]/abar[i-1]
		if i > 0 {
			alpha = abar / prev
		}
		if math.IsNaN(alpha) { // 0/0: abar reached 0 before the last step
			return nil, fmt.Errorf("schedule: rescale_betas_zero_snr: abar reaches 0 at training step %d, before the last", i-1)
		}
		out[i] = 1 - alpha
		prev = abar
	}
	return out, nil
}
