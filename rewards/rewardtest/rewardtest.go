// Package rewardtest opens the rewards that other packages' tests use as independent judges, in
// the manner of net/http/httptest. Each skips the test with modeltest's or testenv's message
// when what it needs is absent, and closes what it opened when the test ends.
package rewardtest

import (
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/rewards"
)

// MNISTJudge is the real MNIST classifier as an independent reader of generated digits:
// centre-crop 32 -> 28, pixels mapped to [-1, 1].
func MNISTJudge(tb testing.TB) *rewards.Classifier {
	tb.Helper()
	return modeltest.Open(tb, func() (*rewards.Classifier, error) {
		path := testenv.SharedFile(tb, "models/mnist-cnn-classifier/mnist-8.onnx")
		return rewards.NewClassifier(path, rewards.ClassifierOptions{Target: 0, Crop: 28, Mean: 0.5, Std: 0.5, Score: rewards.LogProb})
	})
}
