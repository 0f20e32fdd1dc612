package models

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFloat16KnownValues(t *testing.T) {
	// Bit patterns from the IEEE 754 binary16 definition.
	cases := []struct {
		f    float32
		bits uint16
	}{
		{0, 0x0000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},                       // largest finite half
		{65520, 0x7c00},                       // halfway to 65536: ties to even rounds to Inf
		{float32(math.Ldexp(1, -24)), 0x0001}, // smallest subnormal
		{float32(math.Ldexp(1, -14)), 0x0400}, // smallest normal
		{float32(math.Ldexp(1, -25)), 0x0000}, // half of the smallest subnormal: ties to even gives 0
		{float32(math.Ldexp(3, -26)), 0x0001}, // 0.75 of the smallest subnormal rounds up
		{0.1, 0x2e66},                         // 0.0999755859375
		{float32(math.Inf(-1)), 0xfc00},
		{1 + float32(math.Ldexp(1, -11)), 0x3c00}, // tie between 1 and 1+2^-10: even is 1
		{1 + float32(math.Ldexp(3, -11)), 0x3c02}, // tie between 1+2^-10 and 1+2^-9: even is the latter
	}
	for _, c := range cases {
		if got := toHalf(c.f); got != c.bits {
			t.Errorf("toHalf(%g) = %#04x, want %#04x", c.f, got, c.bits)
		}
	}
	if h := toHalf(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN encoded as %#04x, not a NaN", h)
	}
}

func TestFloat16RoundTripsEveryHalf(t *testing.T) {
	for h := range 1 << 16 {
		f := fromHalf(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if got := toHalf(f); got != uint16(h) {
			t.Fatalf("half %#04x -> %g -> %#04x", h, f, got)
		}
	}
}

func TestFloat16RoundsToNearest(t *testing.T) {
	// Independent check: the encoded half is at least as close as both neighbouring halves.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := float32((rng.Float64()*2 - 1) * math.Pow(2, float64(rng.IntN(40)-24)))
		h := toHalf(f)
		got := float64(fromHalf(h))
		err := math.Abs(got - float64(f))
		for _, n := range []uint16{h - 1, h + 1} {
			nv := float64(fromHalf(n))
			if math.IsNaN(nv) || math.IsInf(nv, 0) || (n^h)&0x8000 != 0 {
				continue
			}
			if d := math.Abs(nv - float64(f)); d < err {
				t.Fatalf("toHalf(%g) = %g, but neighbour %g is closer", f, got, nv)
			}
		}
	}
}
