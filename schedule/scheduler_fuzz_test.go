package schedule

import (
	"errors"
	"math"
	"testing"
)

// FuzzParseScheduler feeds arbitrary bytes to the scheduler_config.json reader (seeds:
// testdata/fuzz/FuzzParseScheduler, real configs among them). Properties: no panic; an error
// other than ErrUnsupported comes with a zero Scheduler; and what is accepted (or recovered
// with With, as --scheduler does) builds a grid of steps levels without panicking: either an
// error or steps+1 levels whose Alpha and Sigma lie in [0, 1] with Alpha^2 + Sigma^2 = 1 (so
// never NaN).
func FuzzParseScheduler(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, steps uint8) {
		s, err := ParseScheduler(data)
		switch {
		case errors.Is(err, ErrUnsupported):
			s = s.With(DDIMScheduler)
		case err != nil:
			if s.Kind != "" || s.TrainSteps != 0 {
				t.Fatalf("error %v came with a non-zero Scheduler %+v", err, s)
			}
			return
		}
		n := 1 + int(steps%64)
		levels, err := s.Levels(n)
		if err != nil {
			return
		}
		if len(levels) != n+1 {
			t.Fatalf("%d levels for %d steps", len(levels), n)
		}
		for i, l := range levels {
			if !(l.Alpha >= 0 && l.Alpha <= 1 && l.Sigma >= 0 && l.Sigma <= 1) || math.Abs(l.Alpha*l.Alpha+l.Sigma*l.Sigma-1) > 1e-9 {
				t.Fatalf("level %d = %+v: not alpha, sigma in [0, 1] with alpha^2 + sigma^2 = 1", i, l)
			}
		}
	})
}
