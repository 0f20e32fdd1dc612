package models

import (
	"encoding/binary"
	"math"
)

// EncodeFloat16 writes src as IEEE 754 half-precision values (little-endian) into dst, which must
// hold 2*len(src) bytes. Rounding is to nearest, ties to even, as hardware conversions do;
// values beyond the half range become ±Inf and NaN stays NaN.
func EncodeFloat16(dst []byte, src []float32) {
	for i, f := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], toHalf(f))
	}
}

// DecodeFloat16 reads little-endian half-precision values from src into dst (len(src) = 2*len(dst)).
func DecodeFloat16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = fromHalf(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func toHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff > 0x7f800000: // NaN: keep it a quiet NaN
		return sign | 0x7e00
	case exp >= 0x1f: // overflow, or Inf
		return sign | 0x7c00
	case exp <= 0: // subnormal half, or zero
		if exp < -10 {
			return sign
		}
		mant |= 0x800000 // implicit leading one
		shift := uint32(14 - exp)
		half := mant >> shift
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is the correct rounding up to the next binade or Inf
	}
	return sign | uint16(half)
}

func fromHalf(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		// Subnormal or zero: value = mant * 2^-24 exactly representable in float32.
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}
