package step

import "github.com/fksteer/fksteer/schedule"

// Take writes the mean of one step of rule r for a whole batch and returns its standard
// deviation. prevX0 and prev are DPM-Solver++(2M)'s previous prediction and its level (prev nil:
// a first-order step); the other rules ignore them. An unknown rule (one [schedule.ParseRule]
// would refuse) takes the deterministic DDIM step; sampler's Config.Validate never lets one
// through.
func Take(r schedule.Rule, mean, x, x0, eps, prevX0 []float32, prev *schedule.Level, from, to schedule.Level, eta float64) float64 {
	switch r {
	case schedule.DPMpp2MRule:
		return DPMSolver2M(mean, x, x0, prevX0, prev, from, to)
	case schedule.LCMRule:
		return LCM(mean, x0, to)
	case schedule.DDIMRule:
		return DDIM(mean, x0, eps, from, to, eta)
	case schedule.DDPMRule:
		return DDPM(mean, x, x0, from, to)
	case schedule.EulerARule:
		return EulerAncestral(mean, x0, eps, from, to, eta)
	case schedule.FlowSDERule:
		return FlowSDE(mean, x, x0, eps, from, to, eta)
	case schedule.FlowSDECleanRule:
		if to.Clean() {
			// The Euler step onto t' = 0, x - t v, is the prediction x0 itself.
			return DDIM(mean, x0, eps, from, to, 0)
		}
		return FlowSDE(mean, x, x0, eps, from, to, eta)
	}
	return DDIM(mean, x0, eps, from, to, 0)
}
