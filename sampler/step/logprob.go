package step

import "math"

// logSqrt2Pi is log(sqrt(2*pi)), the Gaussian density's constant per element.
var logSqrt2Pi = 0.5 * math.Log(2*math.Pi)

// LogProb returns the log-density of x under N(mean, std^2 I), averaged over the n elements:
//
//	(1/n) sum_i [ -(x_i - mean_i)^2 / (2 std^2) - log(std) - log(sqrt(2 pi)) ]
//
// This is DDPO's convention (ddim_with_logprob.py), which D3PO and Flow-GRPO's SDE step share: the
// mean over elements rather than the sum, constants included. Adv-GRPO drops the constants;
// trainers that want another convention recompute it from the exported mean, std and x. The sum
// runs in float64.
//
// A step with std <= 0 (DDIM with eta 0, or a step onto clean data by any rule but flow-sde) has
// no density. LogProb returns NaN for it, and for empty x, rather than -Inf or a panic: NaN
// cannot pass for a very unlikely sample in a weight or a ratio, and it shows up in any
// statistic it reaches. Callers should not ask. x and mean must have equal lengths; LogProb
// panics otherwise. It does not allocate.
func LogProb(x, mean []float32, std float64) float64 {
	mustMatch(mean, x)
	if !(std > 0) || len(x) == 0 {
		return math.NaN()
	}
	var sq float64
	for i, m := range mean {
		d := float64(x[i]) - float64(m)
		sq += d * d
	}
	return -sq/(2*std*std*float64(len(x))) - math.Log(std) - logSqrt2Pi
}
