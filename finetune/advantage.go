package finetune

import (
	"math"
	"slices"
)

// The epsilons added to the standard deviation when normalising rewards into advantages, as the
// trainers do: DDPO's per-prompt stat tracker uses 1e-6, Flow-GRPO (and Adv-GRPO) 1e-4.
const (
	DDPOEpsilon = 1e-6
	GRPOEpsilon = 1e-4
)

// GroupAdvantages returns (r - mean) / (std + eps) for one group's rewards, with the population
// standard deviation (numpy's default, ddof = 0) that DDPO and Flow-GRPO use. Non-finite rewards
// are left out of the statistics and get a NaN advantage. The finite advantages of a group have
// mean 0 (up to rounding).
func GroupAdvantages(rewards []float64, eps float64) []float64 {
	mean, std := stats(rewards)
	out := make([]float64, len(rewards))
	for i, r := range rewards {
		out[i] = (r - mean) / (std + eps)
		if !finite(r) {
			out[i] = math.NaN()
		}
	}
	return out
}

// advantages computes the advantage of every row: rewards[i] normalised within the rows that
// share keys[i]. With global set, the standard deviation is that of all finite rewards together
// (Flow-GRPO's global_std) while the mean stays the group's.
func advantages(rewards []float64, keys []string, eps float64, global bool) []float64 {
	byKey := map[string][]int{}
	var order []string
	for i, k := range keys {
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], i)
	}
	_, globalStd := stats(rewards)
	out := make([]float64, len(rewards))
	for _, k := range order {
		rows := byKey[k]
		group := make([]float64, len(rows))
		for j, i := range rows {
			group[j] = rewards[i]
		}
		mean, std := stats(group)
		if global {
			std = globalStd
		}
		for _, i := range rows {
			out[i] = (rewards[i] - mean) / (std + eps)
			if !finite(rewards[i]) {
				out[i] = math.NaN()
			}
		}
	}
	return out
}

// stats returns the mean and population standard deviation of the finite values, computed in
// two passes for accuracy. With no finite value both are NaN (written as null): a group whose
// every reward failed has no mean, and 0 would pass for a measured one.
func stats(v []float64) (mean, std float64) {
	fin := slices.DeleteFunc(slices.Clone(v), func(x float64) bool { return !finite(x) })
	if len(fin) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range fin {
		mean += x
	}
	mean /= float64(len(fin))
	var ss float64
	for _, x := range fin {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(fin)))
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
