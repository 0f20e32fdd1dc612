package sampler_test

import (
	"testing"

	"github.com/fksteer/fksteer/internal/testmodels"
)

// The models these tests run; see internal/testmodels.
var (
	openMNIST  = testmodels.MNIST
	mnistJudge = testmodels.MNISTJudge
	openGlyphs = testmodels.Glyphs
)

// skipUnderRace skips a large statistical test in the race-detector pass; see raceEnabled.
func skipUnderRace(tb testing.TB) {
	tb.Helper()
	if raceEnabled {
		tb.Skip("large statistical test: runs without -race (make test's second pass)")
	}
}
