package schedule

import (
	"slices"
	"strings"
	"testing"
)

func TestTimesteps(t *testing.T) {
	// SD 1.5, 50 steps: step ratio 1000//50 = 20, so arange(50)*20 = 0, 20, ..., 980, reversed,
	// plus steps_offset 1.
	sd50 := []int{
		981, 961, 941, 921, 901, 881, 861, 841, 821, 801,
		781, 761, 741, 721, 701, 681, 661, 641, 621, 601,
		581, 561, 541, 521, 501, 481, 461, 441, 421, 401,
		381, 361, 341, 321, 301, 281, 261, 241, 221, 201,
		181, 161, 141, 121, 101, 81, 61, 41, 21, 1,
	}
	trailing48 := []int{999, 978, 957, 936}
	for _, tc := range []struct {
		spacing     Spacing
		n, offset   int
		want        []int
		explanation string
	}{
		{Leading, 50, 1, sd50, "SD 1.5"},
		{Leading, 4, 0, []int{750, 500, 250, 0}, "arange(4)*250 reversed"},
		{Trailing, 1, 1, []int{999}, "arange(1000, 0, -1000) = [1000], minus 1; the offset is ignored"},
		{Trailing, 4, 1, []int{999, 749, 499, 249}, "1000, 750, 500, 250 minus 1 (SD-Turbo, 4 steps)"},
		{Trailing, 3, 0, []int{999, 666, 332}, "1000, 666.67, 333.33 rounded, minus 1"},
		// 1000/16 = 62.5 puts every other value on an exact half: 937.5, 812.5, 687.5, 562.5, ...
		// round to even 938, 812, 688, 562, ... (half away from zero would give 813 and 563).
		{Trailing, 16, 0, []int{999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61}, "ties to even"},
		// numpy's arange fills start + i*delta with delta = (1000 - 1000/48) - 1000 =
		// -20.83333333333337, not -1000/48, so element 3 is 937.4999999999999, not 937.5: 937 - 1.
		{Trailing, 48, 0, trailing48, "numpy's arange arithmetic"},
		{Linspace, 4, 1, []int{999, 666, 333, 0}, "linspace(0, 999, 4) = 0, 333, 666, 999"},
		{Linspace, 3, 0, []int{999, 500, 0}, "linspace(0, 999, 3) = 0, 499.5, 999"},
		// 999/6 = 166.5: 166.5 and 832.5 round to even 166 and 832 (half away from zero: 167, 833).
		{Linspace, 7, 0, []int{999, 832, 666, 500, 333, 166, 0}, "ties to even"},
		{Linspace, 1, 0, []int{0}, "numpy.linspace(0, 999, 1) = [0], as diffusers gives"},
	} {
		got, err := Timesteps(tc.spacing, 1000, tc.n, tc.offset)
		if err != nil {
			t.Errorf("%s n=%d: %v", tc.spacing, tc.n, err)
			continue
		}
		if len(got) != tc.n {
			t.Errorf("%s n=%d: %d timesteps", tc.spacing, tc.n, len(got))
			continue
		}
		got = got[:len(tc.want)] // the n=48 case pins the first four only
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s n=%d offset=%d (%s):\n got %v\nwant %v", tc.spacing, tc.n, tc.offset, tc.explanation, got, tc.want)
		}
	}
}

// numpy's arange(1000, 0, -1000/61) has 62 elements, the last rounding to timestep -1; we keep n.
func TestTimestepsTrailingAlwaysN(t *testing.T) {
	for n := 1; n <= 1000; n++ {
		ts, err := Timesteps(Trailing, 1000, n, 0)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(ts) != n || ts[0] != 999 || ts[n-1] < 0 {
			t.Fatalf("n=%d: len %d, first %d, last %d", n, len(ts), ts[0], ts[n-1])
		}
		for i := 1; i < n; i++ {
			if ts[i] >= ts[i-1] {
				t.Fatalf("n=%d: not strictly descending at %d: %v", n, i, ts)
			}
		}
	}
}

func TestTimestepsErrors(t *testing.T) {
	for _, tc := range []struct {
		spacing     Spacing
		n, offset   int
		errContains string
	}{
		{Leading, 0, 1, "want 1..1000"},
		{Leading, 1001, 0, "want 1..1000"},
		{Leading, 1000, 1, "outside 0..999"}, // 999 + 1
		{Leading, 10, -1, "outside 0..999"},  // 0 - 1
		{"even", 10, 0, "leading, trailing, linspace"},
	} {
		_, err := Timesteps(tc.spacing, 1000, tc.n, tc.offset)
		if err == nil || !strings.Contains(err.Error(), tc.errContains) {
			t.Errorf("Timesteps(%q, 1000, %d, %d) error = %v, want one containing %q",
				tc.spacing, tc.n, tc.offset, err, tc.errContains)
		}
	}
}

func TestParseSpacing(t *testing.T) {
	for _, s := range []string{"leading", "trailing", "linspace"} {
		if got, err := ParseSpacing(s); err != nil || string(got) != s {
			t.Errorf("ParseSpacing(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := ParseSpacing(""); err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Errorf("ParseSpacing(\"\") error = %v, want one naming the valid values", err)
	}
}
