package schedule

import (
	"fmt"
	"math"

	"github.com/fksteer/fksteer/internal/enum"
)

// Spacing names how N inference timesteps are picked out of a model's T training timesteps. The
// values are the strings diffusers writes in scheduler_config.json ("timestep_spacing").
type Spacing string

const (
	// Leading takes every (T/N)-th timestep from 0 and adds the steps offset, so the noisiest
	// timestep stays below T-1 (Stable Diffusion 1.x: 981, 961, ..., 1 for 50 steps).
	Leading Spacing = "leading"
	// Trailing counts back from T in steps of T/N, so the first timestep is always T-1, the
	// pure-noise end; distilled few-step models such as SD-Turbo need it.
	Trailing Spacing = "trailing"
	// Linspace spreads N timesteps evenly over [0, T-1], both ends included.
	Linspace Spacing = "linspace"
)

// ParseSpacing turns a scheduler_config.json "timestep_spacing" value into a Spacing.
func ParseSpacing(s string) (Spacing, error) {
	return enum.Parse("timestep spacing", s, spacings...)
}

var spacings = []Spacing{Leading, Trailing, Linspace}

// checkSpacing reports a Spacing built in code that is none of the spacings.
func checkSpacing(s Spacing) error { return enum.Check("timestep spacing", s, spacings...) }

// Timesteps returns the n inference timesteps out of trainSteps, noisiest first, exactly as
// diffusers' DDIMScheduler.set_timesteps picks them (T = trainSteps):
//
//	leading:  arange(n) * (T//n), reversed, + stepsOffset
//	trailing: round(arange(T, 0, -T/n)) - 1
//	linspace: round(linspace(0, T-1, n)), reversed
//
// Rounding is numpy's, half to even. stepsOffset applies to leading only, as in diffusers.
// It is an error if n is not in 1..T, or if the offset pushes a timestep outside 0..T-1
// (diffusers would index past the end of its tables there).
//
// One deliberate difference: numpy's arange with a fractional step can produce n+1 values for
// some n (for T = 1000: n = 61, 103, 121, ...), and the extra one rounds to timestep -1; Timesteps
// always returns exactly n.
func Timesteps(spacing Spacing, trainSteps, n, stepsOffset int) ([]int, error) {
	times, err := spacedTimes(spacing, trainSteps, n, stepsOffset, true)
	if err != nil {
		return nil, err
	}
	ts := make([]int, n)
	for i, t := range times {
		ts[i] = int(t)
	}
	return ts, nil
}

// spacedTimes is Timesteps in float64. With round false, linspace keeps its fractional values, as
// diffusers' EulerDiscreteScheduler does; the other spacings are whole numbers either way.
func spacedTimes(spacing Spacing, trainSteps, n, stepsOffset int, round bool) ([]float64, error) {
	if err := checkSpacing(spacing); err != nil {
		return nil, err
	}
	if trainSteps <= 0 {
		return nil, fmt.Errorf("schedule: %d training steps: want at least 1", trainSteps)
	}
	if n <= 0 || n > trainSteps {
		return nil, fmt.Errorf("schedule: %d inference steps: want 1..%d (the training steps)", n, trainSteps)
	}
	T := float64(trainSteps)
	ts := make([]float64, n)
	switch spacing {
	case Leading:
		ratio := trainSteps / n
		for i := range ts {
			ts[i] = float64((n-1-i)*ratio + stepsOffset)
		}
	case Trailing:
		// numpy's arange(T, 0, -T/n) fills start + i*delta with delta = (start+step) - start.
		delta := (T - T/float64(n)) - T
		for i := range ts {
			ts[i] = math.RoundToEven(T+float64(i)*delta) - 1
		}
	case Linspace:
		lin := linspace(0, T-1, n)
		for i := range ts {
			ts[i] = lin[n-1-i]
			if round {
				ts[i] = math.RoundToEven(ts[i])
			}
		}
	}
	if ts[0] > T-1 || ts[n-1] < 0 {
		return nil, fmt.Errorf("schedule: %s spacing with steps offset %d gives timesteps %v..%v, outside 0..%d",
			spacing, stepsOffset, ts[0], ts[n-1], trainSteps-1)
	}
	return ts, nil
}
