package particles_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/particles"
)

func TestParseScheme(t *testing.T) {
	for _, s := range particles.Schemes() {
		got, err := particles.ParseScheme(strings.ToUpper(" " + string(s) + " "))
		if err != nil || got != s {
			t.Errorf("ParseScheme(%q) = %q, %v; want %q, nil", s, got, err, s)
		}
	}
	_, err := particles.ParseScheme("metropolis")
	if err == nil {
		t.Fatal("ParseScheme(metropolis): no error")
	}
	for _, s := range particles.Schemes() {
		if !strings.Contains(err.Error(), string(s)) {
			t.Errorf("error %q does not list %q", err, s)
		}
	}
	if err := particles.Scheme("bogus").Resample(rand.New(rand.NewPCG(1, 1)), []float64{0}, make([]int, 1)); err == nil {
		t.Error("Resample with an unknown scheme: no error")
	}
}

// testWeights is the fixed, non-uniform weight vector of the unbiasedness tests: one tiny
// (0.001) and one large (0.35) weight, and n*w_i far from integers for n = 8.
var testWeights = []float64{0.001, 0.35, 0.1, 0.05, 0.2, 0.149, 0.08, 0.07}

// copyVariance returns the exact variance of the number of copies of each index for scheme s
// drawing n ancestors from normalised weights w.
func copyVariance(s particles.Scheme, w []float64, n int) []float64 {
	v := make([]float64, len(w))
	nf := float64(n)
	switch s {
	case particles.Multinomial:
		for i, wi := range w {
			v[i] = nf * wi * (1 - wi)
		}
	case particles.Systematic:
		// Copies are floor(n w) + Bernoulli(frac(n w)).
		for i, wi := range w {
			f := nf*wi - math.Floor(nf*wi)
			v[i] = f * (1 - f)
		}
	case particles.Residual:
		// Multinomial with R draws on the normalised residuals.
		var r float64
		for _, wi := range w {
			r += nf*wi - math.Floor(nf*wi)
		}
		r = math.Round(r)
		for i, wi := range w {
			rho := (nf*wi - math.Floor(nf*wi)) / r
			v[i] = r * rho * (1 - rho)
		}
	case particles.Stratified:
		// Stratum j is [j/n, (j+1)/n) and holds one independent uniform; it lands in i's interval
		// [C_{i-1}, C_i) with probability n * (length of the overlap).
		var lo float64
		for i, wi := range w {
			hi := lo + wi
			for j := range n {
				a, b := math.Max(lo, float64(j)/nf), math.Min(hi, float64(j+1)/nf)
				if p := nf * (b - a); p > 0 {
					v[i] += p * (1 - p)
				}
			}
			lo = hi
		}
	}
	return v
}

// TestResampleUnbiased checks, for every scheme, that the mean number of copies of index i over
// 200000 seeded draws is n*w_i, and that the copy-count variance is the scheme's exact variance.
//
// Tolerances: the mean of N iid counts has standard error sqrt(var_i/N), with var_i the
// scheme's exact variance (copyVariance); we allow 5 standard errors (a false alarm has
// probability ~6e-7 per entry, and the seed is fixed anyway). The sample variance s^2 has
// standard error sqrt((m4 - s^4)/N), with m4 the sample fourth central moment; again 5 of them.
// A scheme that is biased, or that drifts towards another scheme's variance, fails.
func TestResampleUnbiased(t *testing.T) {
	const draws = 200000
	n := len(testWeights)
	logw := make([]float64, n)
	for i, w := range testWeights {
		logw[i] = math.Log(w) + 500 // shifted: normalisation must not care
	}
	totalVar := map[particles.Scheme]float64{}
	for si, s := range particles.Schemes() {
		t.Run(string(s), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(42, uint64(si)))
			parents := make([]int, n)
			counts := make([]float64, n)
			sum := make([]float64, n)
			sums := make([][]float64, 0, draws)
			for d := range draws {
				if err := s.Resample(rng, logw, parents); err != nil {
					t.Fatal(err)
				}
				if !slices.IsSorted(parents) {
					t.Fatalf("draw %d: parents %v not ascending", d, parents)
				}
				clear(counts)
				for _, a := range parents {
					counts[a]++
				}
				for i, c := range counts {
					nw := float64(n) * testWeights[i]
					switch s {
					case particles.Systematic:
						if c != math.Floor(nw) && c != math.Ceil(nw) {
							t.Fatalf("draw %d: systematic gave %v copies of %d, want floor or ceil of %v", d, c, i, nw)
						}
					case particles.Residual:
						if c < math.Floor(nw) {
							t.Fatalf("draw %d: residual gave %v copies of %d, want at least floor(%v)", d, c, i, nw)
						}
					}
					sum[i] += c
				}
				sums = append(sums, slices.Clone(counts))
			}
			want := copyVariance(s, testWeights, n)
			for i := range n {
				mean := sum[i] / draws
				var m2, m4 float64
				for _, c := range sums {
					d := c[i] - mean
					m2 += d * d
					m4 += d * d * d * d
				}
				m2 /= draws
				m4 /= draws
				totalVar[s] += m2
				nw := float64(n) * testWeights[i]
				if tol := 5*math.Sqrt(want[i]/draws) + 1e-12; math.Abs(mean-nw) > tol {
					t.Errorf("index %d: mean copies %.5f, want n*w = %.5f (tolerance %.5f)", i, mean, nw, tol)
				}
				if tol := 5*math.Sqrt(math.Max(m4-m2*m2, 0)/draws) + 1e-12; math.Abs(m2-want[i]) > tol {
					t.Errorf("index %d: copy variance %.5f, want %.5f (tolerance %.5f)", i, m2, want[i], tol)
				}
			}
		})
	}
	t.Logf("total copy-count variance: %v", totalVar)
	for _, s := range []particles.Scheme{particles.Systematic, particles.Stratified, particles.Residual} {
		if !(totalVar[s] < totalVar[particles.Multinomial]) {
			t.Errorf("%s copy variance %.4f is not below multinomial's %.4f", s, totalVar[s], totalVar[particles.Multinomial])
		}
	}
	if !(totalVar[particles.Systematic] <= totalVar[particles.Stratified]) {
		t.Errorf("systematic copy variance %.4f is above stratified's %.4f", totalVar[particles.Systematic], totalVar[particles.Stratified])
	}
}

// TestResampleZeroWeights: -Inf and NaN log-weights never get a copy, for random positions of
// the zeros and random positive weights (seeded), including n != len(logw).
func TestResampleZeroWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, s := range particles.Schemes() {
		for trial := range 2000 {
			m := 1 + rng.IntN(12)
			logw := make([]float64, m)
			alive := 0
			for i := range logw {
				switch rng.IntN(3) {
				case 0:
					logw[i] = ninf
				case 1:
					logw[i] = nan
				default:
					logw[i] = 3 * rng.NormFloat64()
					alive++
				}
			}
			if alive == 0 {
				logw[rng.IntN(m)] = 0
			}
			parents := make([]int, 1+rng.IntN(16))
			if err := s.Resample(rng, logw, parents); err != nil {
				t.Fatalf("%s trial %d: %v", s, trial, err)
			}
			for _, a := range parents {
				if a < 0 || a >= m || !(logw[a] > ninf) {
					t.Fatalf("%s trial %d: drew index %d with log-weight %v (logw %v, parents %v)", s, trial, a, logw[a], logw, parents)
				}
			}
			if !slices.IsSorted(parents) {
				t.Fatalf("%s trial %d: parents %v not ascending", s, trial, parents)
			}
		}
	}
}

func TestResampleDegenerate(t *testing.T) {
	for _, s := range particles.Schemes() {
		rng := rand.New(rand.NewPCG(1, 2))
		parents := []int{-7, -7, -7}
		for _, logw := range [][]float64{nil, {ninf, ninf}, {nan, ninf, nan}} {
			err := s.Resample(rng, logw, parents)
			if !errors.Is(err, particles.ErrZeroWeights) {
				t.Errorf("%s: Resample(%v) error = %v, want ErrZeroWeights", s, logw, err)
			}
			if !slices.Equal(parents, []int{-7, -7, -7}) {
				t.Errorf("%s: parents changed on error: %v", s, parents)
			}
		}
		// One-hot: every slot copies it.
		if err := s.Resample(rng, []float64{ninf, 1000, ninf, nan}, parents); err != nil || !slices.Equal(parents, []int{1, 1, 1}) {
			t.Errorf("%s: one-hot gave %v, %v; want [1 1 1]", s, parents, err)
		}
		// +Inf entries share the mass; finite ones get nothing.
		big := make([]int, 1000)
		if err := s.Resample(rng, []float64{0, inf, 5, inf}, big); err != nil {
			t.Fatal(err)
		}
		c1 := 0
		for _, a := range big {
			if a != 1 && a != 3 {
				t.Fatalf("%s: +Inf weights: drew %d", s, a)
			}
			if a == 1 {
				c1++
			}
		}
		if c1 < 400 || c1 > 600 { // binomial(1000, 1/2) sd ~16; 6 sd
			t.Errorf("%s: +Inf weights: index 1 got %d of 1000 copies, want about 500", s, c1)
		}
		// Uniform weights and the systematic/residual schemes: exactly one copy each.
		if s == particles.Systematic || s == particles.Residual {
			p := make([]int, 5)
			if err := s.Resample(rng, []float64{2, 2, 2, 2, 2}, p); err != nil || !slices.Equal(p, []int{0, 1, 2, 3, 4}) {
				t.Errorf("%s: uniform gave %v, %v; want identity", s, p, err)
			}
		}
	}
}

func TestResampleNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	logw := make([]float64, 16)
	for i := range logw {
		logw[i] = rng.NormFloat64()
	}
	parents := make([]int, 16)
	for _, s := range particles.Schemes() {
		if a := testing.AllocsPerRun(100, func() { _ = s.Resample(rng, logw, parents) }); a != 0 {
			t.Errorf("%s: %v allocations per Resample, want 0", s, a)
		}
	}
}

func BenchmarkResample(b *testing.B) {
	const k = 16
	rng := rand.New(rand.NewPCG(5, 6))
	logw := make([]float64, k)
	for i := range logw {
		logw[i] = 2 * rng.NormFloat64()
	}
	parents := make([]int, k)
	for _, s := range particles.Schemes() {
		b.Run(string(s)+"/K=16", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Resample(rng, logw, parents); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
