package particles

import (
	"errors"
	"math"
	"math/rand/v2"

	"github.com/fksteer/fksteer/internal/enum"
)

// Scheme names a resampling scheme. Every scheme is unbiased: particle i receives, in
// expectation, exactly len(parents) * w_i copies, where w_i is its normalised weight. They differ
// in the variance of the copy counts (lowest first): systematic <= stratified <= multinomial, and
// residual <= multinomial.
type Scheme string

// The resampling schemes. Strings are the names accepted by [ParseScheme].
const (
	// Multinomial draws each ancestor independently with probability w_i.
	Multinomial Scheme = "multinomial"
	// Stratified draws one uniform in each of the n strata [j/n, (j+1)/n) independently.
	Stratified Scheme = "stratified"
	// Systematic uses one uniform U and the n points (j+U)/n. Particle i then gets
	// floor(n w_i) or ceil(n w_i) copies, never anything else.
	Systematic Scheme = "systematic"
	// Residual gives particle i floor(n w_i) copies deterministically and fills the remaining
	// R = n - sum_i floor(n w_i) slots by multinomial sampling on the residuals
	// n w_i - floor(n w_i) (the classic residual-multinomial scheme of Liu and Chen, 1998).
	Residual Scheme = "residual"
)

// Schemes lists every valid scheme, in the order the error messages list them.
func Schemes() []Scheme { return []Scheme{Multinomial, Stratified, Systematic, Residual} }

// ErrZeroWeights is returned by [Scheme.Resample] when no particle has positive weight: every
// log-weight is -Inf or NaN, or there are none. Callers turn it into a message naming the step and
// group (usually: every reward was NaN).
var ErrZeroWeights = errors.New("particles: every weight is zero (all log-weights are -Inf or NaN)")

// ParseScheme returns the scheme named s, by [enum.Parse]'s rule (case-insensitive, surrounding
// space ignored), or an error that lists the valid names.
func ParseScheme(s string) (Scheme, error) { return enum.Parse("resampling scheme", s, Schemes()...) }

// Resample draws len(parents) ancestor indices into parents from the weights exp(logw[i]),
// normalised over logw; parents and logw may have different lengths. It is unbiased: the
// expected number of times index i appears is len(parents) * w_i exactly (up to the float64
// rounding of w_i).
//
// Order: parents is written in ascending order for every scheme, so the copies of one ancestor
// are contiguous. Callers that want another order must permute it themselves; the population does
// not care.
//
// Zero weights: an index whose log-weight is -Inf or NaN is never drawn. If some log-weights are
// +Inf, only those are drawn, in equal shares.
//
// Rounding: the cumulative sums are float64 sums of unnormalised weights exp(logw[i] - max), and
// the positions are scaled by the same sum computed in the same order, so the last cumulative
// value is exactly the total (the usual "last cumulative weight is 0.9999999" gap cannot arise).
// A position that rounding still places at or past it goes to the last index with positive
// weight, never to a zero-weight index or past the end.
//
// Random numbers: Systematic reads one rng.Float64, Stratified and Multinomial len(parents),
// Residual one per residual slot. Multinomial and the residual part of Residual draw the sorted
// uniforms directly (each is the minimum of the remaining ones), so no scheme allocates or sorts.
//
// It returns [ErrZeroWeights] if every weight is zero, and an error for an unknown scheme; on
// error parents is unchanged and rng is not read. rng must not be nil.
func (s Scheme) Resample(rng *rand.Rand, logw []float64, parents []int) error {
	if err := enum.Check("resampling scheme", s, Schemes()...); err != nil {
		return err
	}
	sc := scaleOf(logw)
	if sc.zero() {
		return ErrZeroWeights
	}
	if len(parents) == 0 {
		return nil
	}
	// Pass 1: the total and the last index with positive weight. The walk below adds the same
	// terms in the same order, so its cumulative sum ends exactly at total.
	var total float64
	last := -1
	for i, l := range logw {
		if w := sc.w(l); w > 0 {
			total += w
			last = i
		}
	}
	if s == Residual {
		residual(rng, sc, logw, total, last, parents)
		return nil
	}
	u := uniforms{scheme: s, rng: rng, n: len(parents)}
	walk(sc, logw, total, last, &u, parents)
	return nil
}

// walk merges the ascending positions u (in [0,1), scaled by total) with the cumulative weights:
// position p goes to the index i with C_{i-1} <= p < C_i, which has w_i > 0. Positions that
// rounding pushes to or past the total go to last.
func walk(sc scale, logw []float64, total float64, last int, u *uniforms, parents []int) {
	n := len(parents)
	j := 0
	p := u.next() * total
	var c float64
	for i, l := range logw {
		if w := sc.w(l); w > 0 {
			c += w
		} else {
			continue // never drawn; c is unchanged so no position can stop here
		}
		for j < n && (p < c || i == last) {
			parents[j] = i
			j++
			if j < n {
				p = u.next() * total
			}
		}
		if j == n {
			return
		}
	}
}

// residual implements [Residual]: floor(n w_i) copies of i, then R multinomial draws on the
// residuals, merged in one ascending pass.
func residual(rng *rand.Rand, sc scale, logw []float64, total float64, last int, parents []int) {
	n := len(parents)
	nf := float64(n)
	// First pass: the number of deterministic copies and the residual total, summed in the order
	// the emitting pass below adds them, so its cumulative residual ends exactly at rtotal.
	floors := 0
	var rtotal float64
	rlast := -1
	for i, l := range logw {
		x := nf * sc.w(l) / total
		f := math.Floor(x)
		floors += int(f)
		if r := x - f; r > 0 {
			rtotal += r
			rlast = i
		}
	}
	draws := max(n-floors, 0) // sum_i floor(n w_i) <= n; max guards rounding only
	u := uniforms{scheme: Multinomial, rng: rng, n: draws}
	var p float64
	if draws > 0 {
		p = u.next() * rtotal
	}
	j, d := 0, 0
	var c float64
	for i, l := range logw {
		x := nf * sc.w(l) / total
		f := math.Floor(x)
		for m := 0; m < int(f) && j < n; m++ {
			parents[j] = i
			j++
		}
		r := x - f
		if r <= 0 {
			continue
		}
		c += r
		for d < draws && j < n && (p < c || i == rlast) {
			parents[j] = i
			j++
			d++
			if d < draws {
				p = u.next() * rtotal
			}
		}
	}
	// Rounding guard: if residuals summed to nothing although slots remain, give them to the last
	// positive-weight index, which keeps the output ascending.
	for ; j < n; j++ {
		parents[j] = last
	}
}

// uniforms yields n ascending numbers in [0, 1] for a scheme, one per call to next.
type uniforms struct {
	scheme Scheme
	rng    *rand.Rand
	n, j   int
	u0     float64 // systematic: the single uniform
	prev   float64 // multinomial: the previous order statistic
}

func (u *uniforms) next() float64 {
	j := u.j
	u.j++
	switch u.scheme {
	case Systematic:
		if j == 0 {
			u.u0 = u.rng.Float64()
		}
		return (float64(j) + u.u0) / float64(u.n)
	case Stratified:
		return (float64(j) + u.rng.Float64()) / float64(u.n)
	default: // Multinomial
		// The minimum of m iid uniforms on [a, 1] is a + (1-a)(1 - V^(1/m)), V uniform on (0, 1];
		// given it, the other m-1 are iid uniform on [min, 1]. So drawing minima of the remaining
		// ones yields n sorted iid uniforms in one pass.
		m := float64(u.n - j)
		v := 1 - u.rng.Float64() // (0, 1], so the log is finite
		u.prev += (1 - u.prev) * -math.Expm1(math.Log(v)/m)
		return u.prev
	}
}
