package particles_test

import (
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/fksteer/fksteer/particles"
)

func newStreams(t *testing.T, seeds []uint64, k int) *particles.Streams {
	t.Helper()
	s, err := particles.NewStreams(seeds, k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewStreamsErrors(t *testing.T) {
	if _, err := particles.NewStreams(nil, 4); err == nil {
		t.Error("no seeds: no error")
	}
	if _, err := particles.NewStreams([]uint64{1}, 0); err == nil {
		t.Error("k = 0: no error")
	}
}

// TestStreamsIndependentOfBatch: the stream of (seed, slot) yields the same numbers whether its
// group is alone or the middle of three, and whatever order the rows are filled in, over several
// fills (steps).
func TestStreamsIndependentOfBatch(t *testing.T) {
	const k, dim, steps = 4, 33, 3
	alone := newStreams(t, []uint64{22}, k)
	batch := newStreams(t, []uint64{11, 22, 33}, k)
	for step := range steps {
		want := make([][]float32, k)
		for slot := range k {
			want[slot] = make([]float32, dim)
			alone.FillNormal(slot, want[slot])
		}
		got := make([][]float32, 3*k)
		for r := 3*k - 1; r >= 0; r-- { // reverse order
			got[r] = make([]float32, dim)
			batch.FillNormal(r, got[r])
		}
		for slot := range k {
			if !slices.Equal(got[k+slot], want[slot]) {
				t.Fatalf("step %d slot %d: batched stream differs from the lone one", step, slot)
			}
		}
		// Different slots, and different seeds at the same slot, differ.
		for r := range 3 * k {
			for q := range r {
				if slices.Equal(got[r], got[q]) {
					t.Errorf("step %d: rows %d and %d drew the same numbers", step, q, r)
				}
			}
		}
	}
	// Resampling streams: same per seed whatever G, distinct from the rows'.
	if a, b := alone.Resampler(0).Uint64(), batch.Resampler(1).Uint64(); a != b {
		t.Errorf("resampler of seed 22: %x alone, %x in a batch", a, b)
	}
	if a, b := batch.Resampler(0).Uint64(), batch.Resampler(1).Uint64(); a == b {
		t.Error("resamplers of seeds 11 and 22 agree")
	}
	fresh := newStreams(t, []uint64{22}, k)
	r0 := fresh.Resampler(0).Uint64()
	for slot := range k {
		if fresh.Row(slot).Uint64() == r0 {
			t.Errorf("row %d stream starts like the resampler", slot)
		}
	}
}

// TestStreamsConcurrentRows fills every row from its own goroutine (run under -race) and checks
// the result equals a sequential fill.
func TestStreamsConcurrentRows(t *testing.T) {
	seeds := []uint64{1, 2}
	const k, dim = 8, 64
	seq := newStreams(t, seeds, k)
	par := newStreams(t, seeds, k)
	want := make([]float32, 2*k*dim)
	got := make([]float32, 2*k*dim)
	for r := range 2 * k {
		seq.FillNormal(r, want[r*dim:(r+1)*dim])
	}
	var wg sync.WaitGroup
	for r := range 2 * k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			par.FillNormal(r, got[r*dim:(r+1)*dim])
		}()
	}
	wg.Wait()
	if !slices.Equal(got, want) {
		t.Error("concurrent fills differ from sequential ones")
	}
}

// TestFillNormalMoments: 1e5 draws from one row have mean 0 and variance 1, and adjacent
// slots and adjacent seeds are uncorrelated. Tolerances are 5 standard errors: 5/sqrt(N) for
// the mean and the correlations, 5*sqrt(2/N) for the variance.
func TestFillNormalMoments(t *testing.T) {
	const n = 100000
	s := newStreams(t, []uint64{0, 1}, 2)
	x := make([][]float32, 3)
	for i, r := range []int{0, 1, 2} { // (seed 0, slot 0), (seed 0, slot 1), (seed 1, slot 0)
		x[i] = make([]float32, n)
		s.FillNormal(r, x[i])
	}
	var mean, m2 float64
	for _, v := range x[0] {
		mean += float64(v)
	}
	mean /= n
	for _, v := range x[0] {
		d := float64(v) - mean
		m2 += d * d
	}
	m2 /= n
	if tol := 5 / math.Sqrt(n); math.Abs(mean) > tol {
		t.Errorf("mean %.4f, want 0 within %.4f", mean, tol)
	}
	if tol := 5 * math.Sqrt(2.0/n); math.Abs(m2-1) > tol {
		t.Errorf("variance %.4f, want 1 within %.4f", m2, tol)
	}
	for _, other := range []int{1, 2} {
		var c float64
		for i := range n {
			c += float64(x[0][i]) * float64(x[other][i])
		}
		if c /= n; math.Abs(c) > 5/math.Sqrt(n) {
			t.Errorf("correlation with stream %d: %.4f, want 0 within %.4f", other, c, 5/math.Sqrt(n))
		}
	}
}

func BenchmarkFillNormal(b *testing.B) {
	s, err := particles.NewStreams([]uint64{1}, 1)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, 4*64*64)
	b.SetBytes(int64(len(dst) * 4))
	b.ReportAllocs()
	for b.Loop() {
		s.FillNormal(0, dst)
	}
}
