package particles

import (
	"math/rand/v2"
	"testing"
)

// TestStreamDerivation pins the documented (seed, tag) -> PCG state derivation, so that a change
// to it (which would change every image made from a given seed) cannot go unnoticed.
func TestStreamDerivation(t *testing.T) {
	// The documented formulas, written out again independently of streamState.
	splitmix := func(z uint64) uint64 {
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
	state := func(seed, tag uint64) (uint64, uint64) {
		lo := tag ^ splitmix(seed)
		return seed ^ splitmix(lo), lo
	}
	seeds := []uint64{0, 42, 1 << 63}
	const k = 3
	s, err := NewStreams(seeds, k)
	if err != nil {
		t.Fatal(err)
	}
	for g, seed := range seeds {
		for slot := range k {
			want := rand.New(rand.NewPCG(state(seed, 2*uint64(slot)))).Uint64()
			if got := s.Row(g*k + slot).Uint64(); got != want {
				t.Errorf("seed %d slot %d: first draw %x, want %x", seed, slot, got, want)
			}
		}
		want := rand.New(rand.NewPCG(state(seed, 1))).Uint64()
		if got := s.Resampler(g).Uint64(); got != want {
			t.Errorf("seed %d resampler: first draw %x, want %x", seed, got, want)
		}
	}
	// Golden value: seed 42, slot 0.
	if hi, lo := streamState(42, 0); hi != 0x97ea87f7e45c008f || lo != 0xa759ea27d4727622 {
		t.Errorf("streamState(42, 0) = %#x, %#x", hi, lo)
	}
	// The map is a bijection: invert it.
	for _, seed := range seeds {
		for _, tag := range []uint64{0, 1, 2, 1 << 40} {
			hi, lo := streamState(seed, tag)
			gotSeed := hi ^ mix64(lo)
			if gotSeed != seed || lo^mix64(gotSeed) != tag {
				t.Errorf("streamState(%d, %d) does not invert", seed, tag)
			}
		}
	}
}
