package schedule

import (
	"math"
	"testing"
)

func TestFlowLevels(t *testing.T) {
	for _, tc := range []struct {
		shift float64
		n     int
		want  []float64
	}{
		{0, 4, []float64{1, 0.75, 0.5, 0.25, 0}},
		{1, 4, []float64{1, 0.75, 0.5, 0.25, 0}},
		// shift 3: 3t/(1+2t); t = 1/2 gives 1.5/2 = 0.75, t = 1/4 gives 0.75/1.5 = 0.5.
		{3, 4, []float64{1, 2.25 / 2.5, 0.75, 0.5, 0}},
		{3, 1, []float64{1, 0}},
		// shift 0.3 moves the grid toward data: 0.3*0.5/(1 - 0.7*0.5) = 0.15/0.65. Computed
		// naively, t = 1 would map to 0.9999999999999998.
		{0.3, 2, []float64{1, 0.15 / 0.65, 0}},
	} {
		levels, err := Flow{Shift: tc.shift}.Levels(tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(levels) != len(tc.want) {
			t.Fatalf("shift %v n %d: len %d, want %d", tc.shift, tc.n, len(levels), len(tc.want))
		}
		for i, w := range tc.want {
			l := levels[i]
			if math.Abs(l.Time-w) > floatEquality || math.Abs(l.Sigma-w) > floatEquality || math.Abs(l.Alpha-(1-w)) > floatEquality {
				t.Errorf("shift %v n %d level %d = %+v, want t = %v", tc.shift, tc.n, i, l, w)
			}
		}
		if first, last := levels[0], levels[len(levels)-1]; first.Sigma != 1 || first.Alpha != 0 || !last.Clean() || last.Alpha != 1 {
			t.Errorf("shift %v: ends %+v and %+v, want exact noise and exact data", tc.shift, first, last)
		}
	}
}

func TestFlowLevelsErrors(t *testing.T) {
	for _, f := range []struct {
		flow Flow
		n    int
	}{{Flow{}, 0}, {Flow{Shift: -1}, 10}, {Flow{Shift: math.NaN()}, 10}, {Flow{Shift: math.Inf(1)}, 10}} {
		if _, err := f.flow.Levels(f.n); err == nil {
			t.Errorf("%+v.Levels(%d): no error", f.flow, f.n)
		}
	}
}
