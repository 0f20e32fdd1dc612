package particles

import (
	"fmt"
	"math/rand/v2"
)

// Streams gives every row of a population its own random stream, and every group one more for
// its resampling decisions, all derived from the group's seed alone. What a group draws therefore
// depends only on its seed: not on G, on which other groups share the batch, on the order rows
// are filled in, or on how many goroutines fill them.
//
// # Derivation
//
// Each stream is a PCG-DXSM generator ([rand.PCG]) whose 128-bit initial state (hi, lo) is a
// bijective mix of the group's seed and a stream tag:
//
//	lo = tag ^ mix(seed)
//	hi = seed ^ mix(lo)
//
// where mix is the SplitMix64 finalizer (a bijection of uint64). The tag is 2k for the row of slot
// k and 1 for the group's resampling stream (odd tags are reserved for per-group streams). Each
// line can be undone given the other (seed = hi ^ mix(lo), then tag = lo ^ mix(seed)), so the map
// (seed, tag) -> (hi, lo) is a bijection: distinct pairs start from distinct states of the
// generator's single 2^128 cycle, at effectively random distances. Two groups with different
// seeds therefore never share a stream, and no row shares one with its group's resampling
// stream. (Raw rand.NewPCG(seed, k) would leave the states of nearby seeds and slots differing in
// a few bits only; the mix spreads every input bit over both halves.) Groups given the same seed
// draw the same numbers, as they should: same seed, same image.
//
// # Resampling does not move streams
//
// Streams belong to slots, not to particles. After [Population.Resample] the child in slot k keeps
// drawing from slot k's stream, so two copies of one parent continue with fresh, independent
// noise, which is what makes resampling explore. A slot's stream position depends only on how
// many numbers that slot has drawn, which the loop keeps equal across slots.
//
// FillNormal and Row may be used concurrently for different rows; one row's stream must be used by
// one goroutine at a time. Resampler likewise, per group.
type Streams struct {
	k        int
	rows     []rand.Rand
	resample []rand.Rand
}

// Stream tags, see the Streams derivation.
const resampleTag = 1

func rowTag(k int) uint64 { return uint64(k) << 1 }

// NewStreams returns the streams for len(seeds) groups of k particles; seeds[g] is the seed of
// group g's image. It returns an error if there are no seeds or k is not positive.
func NewStreams(seeds []uint64, k int) (*Streams, error) {
	if len(seeds) == 0 || k <= 0 {
		return nil, fmt.Errorf("particles: streams need at least one seed and k > 0, got %d seeds, k=%d", len(seeds), k)
	}
	s := &Streams{
		k:        k,
		rows:     make([]rand.Rand, len(seeds)*k),
		resample: make([]rand.Rand, len(seeds)),
	}
	src := make([]rand.PCG, len(seeds)*(k+1))
	for g, seed := range seeds {
		for slot := range k {
			pcg := &src[g*k+slot]
			pcg.Seed(streamState(seed, rowTag(slot)))
			s.rows[g*k+slot] = *rand.New(pcg)
		}
		pcg := &src[len(seeds)*k+g]
		pcg.Seed(streamState(seed, resampleTag))
		s.resample[g] = *rand.New(pcg)
	}
	return s, nil
}

// streamState is the documented (seed, tag) -> PCG state bijection.
func streamState(seed, tag uint64) (hi, lo uint64) {
	lo = tag ^ mix64(seed)
	hi = seed ^ mix64(lo)
	return hi, lo
}

// mix64 is the SplitMix64 finalizer, a bijection of uint64.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Row returns row r's stream (r = g*K + k), for draws other than [Streams.FillNormal].
func (s *Streams) Row(r int) *rand.Rand { return &s.rows[r] }

// Resampler returns group g's stream for resampling decisions; pass it to [Scheme.Resample].
func (s *Streams) Resampler(g int) *rand.Rand { return &s.resample[g] }

// FillNormal fills dst with standard normal draws from row r's stream. It does not allocate.
func (s *Streams) FillNormal(r int, dst []float32) {
	rng := &s.rows[r]
	for i := range dst {
		dst[i] = float32(rng.NormFloat64())
	}
}
