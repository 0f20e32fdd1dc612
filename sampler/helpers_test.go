package sampler_test

import (
	"testing"

	"github.com/fksteer/fksteer/pipelines/pipelinetest"
	"github.com/fksteer/fksteer/rewards/rewardtest"
)

// The models these tests run; see pipelines/pipelinetest and rewards/rewardtest.
var (
	openMNIST  = pipelinetest.MNIST
	mnistJudge = rewardtest.MNISTJudge
	openGlyphs = pipelinetest.Glyphs
)

// skipUnderRace skips a large statistical test in the race-detector pass; see raceEnabled.
func skipUnderRace(tb testing.TB) {
	tb.Helper()
	if raceEnabled {
		tb.Skip("large statistical test: runs without -race (make test's second pass)")
	}
}
