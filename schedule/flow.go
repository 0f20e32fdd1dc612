package schedule

import (
	"fmt"
	"math"
)

// Flow describes a rectified-flow model's grid: x_t = (1-t)*x0 + t*noise for t in [0, 1], so
// Alpha = 1-t and Sigma = t (Stable Diffusion 3, Flux, the MNIST DiT of the demo).
//
// Shift moves the grid toward the noisy end, as SD3 does (shift 3) and Flux does per image size
// (shift = exp(mu)): t' = shift*t / (1 + (shift-1)*t). Zero and one both mean no shift; values
// between 0 and 1 are allowed and move the grid toward clean data instead.
type Flow struct {
	Shift float64
}

// Levels returns n+1 levels, t_i = i/n for i = n down to 0, each shifted, with Time = t,
// Alpha = 1-t and Sigma = t. The first level is pure noise (t = 1) and the last is clean data
// (t = 0); both ends stay exact under any shift.
//
// Time is t itself in [0, 1]; a pipeline whose model wants another scale (diffusers' SD3
// transformer takes 1000*t) converts it.
func (f Flow) Levels(n int) ([]Level, error) {
	if n <= 0 {
		return nil, fmt.Errorf("schedule: %d flow steps: want at least 1", n)
	}
	if !(f.Shift >= 0) || math.IsInf(f.Shift, 0) {
		return nil, fmt.Errorf("schedule: flow shift %v: want a finite value >= 0", f.Shift)
	}
	levels := make([]Level, 0, n+1)
	for i := n; i >= 0; i-- {
		t := f.shift(float64(i) / float64(n))
		levels = append(levels, Level{Time: t, Alpha: 1 - t, Sigma: t})
	}
	return levels, nil
}

func (f Flow) shift(t float64) float64 {
	if f.Shift == 0 || f.Shift == 1 || t == 0 || t == 1 {
		return t
	}
	return f.Shift * t / (1 + (f.Shift-1)*t)
}
