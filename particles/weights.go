package particles

import "math"

// scale turns log-weights into unnormalised weights exp(l - m) that cannot overflow, where m is
// the largest log-weight. It also fixes the package's reading of odd values in one place:
//   - NaN is -Inf (weight zero);
//   - if some log-weight is +Inf, the +Inf entries share all the mass equally and every finite
//     entry gets zero (the limit of exp(l - m) as m grows).
type scale struct {
	m   float64 // largest log-weight; -Inf when every weight is zero
	inf bool    // some log-weight is +Inf
}

func scaleOf(logw []float64) scale {
	m := math.Inf(-1)
	for _, l := range logw {
		if l > m { // false for NaN, so NaN never becomes the maximum
			m = l
		}
	}
	return scale{m: m, inf: math.IsInf(m, 1)}
}

// zero reports whether every weight is zero (all -Inf or NaN, or no entries).
func (s scale) zero() bool { return math.IsInf(s.m, -1) }

// w returns the unnormalised weight of log-weight l, in (0, 1] for the largest entry.
func (s scale) w(l float64) float64 {
	if s.inf {
		if math.IsInf(l, 1) {
			return 1
		}
		return 0
	}
	if l != l { // NaN
		return 0
	}
	return math.Exp(l - s.m)
}

// LogSumExp returns log(sum_i exp(xs[i])) computed stably (the largest entry is factored out, so
// entries like 1000 or -1000 neither overflow nor vanish).
//
// NaN entries are treated as -Inf, that is as zero weight. It returns -Inf when xs is empty or
// every entry is -Inf or NaN, and +Inf when some entry is +Inf.
func LogSumExp(xs []float64) float64 {
	s := scaleOf(xs)
	if s.zero() || s.inf {
		return s.m
	}
	var sum float64
	for _, x := range xs {
		sum += s.w(x)
	}
	return s.m + math.Log(sum)
}

// NormalizedWeights writes into dst the normalised weights exp(logw[i]) / sum_j exp(logw[j]),
// which sum to 1 up to rounding. NaN and -Inf log-weights get weight 0; if some log-weights are
// +Inf they share the mass equally. If every weight is zero (or logw is empty), dst is all zeros.
//
// It panics if len(dst) != len(logw). dst and logw may be the same slice.
func NormalizedWeights(dst, logw []float64) {
	if len(dst) != len(logw) {
		panic("particles: NormalizedWeights: len(dst) != len(logw)")
	}
	s := scaleOf(logw)
	if s.zero() {
		clear(dst)
		return
	}
	var sum float64
	for _, l := range logw {
		sum += s.w(l)
	}
	for i, l := range logw {
		dst[i] = s.w(l) / sum
	}
}

// ESS returns the effective sample size (sum_i w_i)^2 / sum_i w_i^2 of the weights
// w_i = exp(logw[i]), computed from the log-weights without overflow. It is len(logw) for equal
// weights, 1 when a single particle has all the weight, and 0 when every weight is zero (all
// -Inf or NaN, or logw empty). NaN is read as -Inf; if some log-weights are +Inf, it is their
// number (they share the mass equally).
func ESS(logw []float64) float64 {
	s := scaleOf(logw)
	if s.zero() {
		return 0
	}
	var s1, s2 float64
	for _, l := range logw {
		w := s.w(l)
		s1 += w
		s2 += w * w
	}
	// s2 >= 1 because the largest entry contributes exactly 1, so this cannot divide by zero.
	return s1 * s1 / s2
}
