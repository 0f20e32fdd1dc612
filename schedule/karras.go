package schedule

import "math"

// karrasRho is the rho of Karras et al. (2022), section 3 and their Table 1: spacing sigma^(1/rho)
// evenly puts more steps at low noise, where detail is decided.
const karrasRho = 7.0

// karrasSigmas returns n sigmas from sigmaMax down to sigmaMin spaced evenly in sigma^(1/rho):
// k-diffusion's get_sigmas_karras without the appended zero.
func karrasSigmas(n int, sigmaMin, sigmaMax float64) []float64 {
	minInv, maxInv := math.Pow(sigmaMin, 1/karrasRho), math.Pow(sigmaMax, 1/karrasRho)
	ramp := linspace(0, 1, n)
	sigmas := make([]float64, n)
	for i, r := range ramp {
		sigmas[i] = math.Pow(maxInv+r*(minInv-maxInv), karrasRho)
	}
	return sigmas
}

// sigmaToT maps sigma to a fractional training timestep by interpolating log(sigma) linearly
// between the two neighbouring entries of logTable (log-sigma per training timestep, increasing):
// diffusers' _sigma_to_t. Below the table it returns 0 and above it the last timestep.
func sigmaToT(sigma float64, logTable []float64) float64 {
	if len(logTable) < 2 {
		return 0
	}
	logSigma := math.Log(math.Max(sigma, 1e-10))
	// low is the last index whose log-sigma is <= logSigma (0 if none), kept below the end so
	// that low+1 exists.
	low := 0
	for i, l := range logTable {
		if l <= logSigma {
			low = i
		}
	}
	low = min(low, len(logTable)-2)
	lo, hi := logTable[low], logTable[low+1]
	w := min(max((lo-logSigma)/(lo-hi), 0), 1)
	return (1-w)*float64(low) + w*float64(low+1)
}
