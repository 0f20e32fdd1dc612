package rewards_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// TestNameErrorNamesARewardOnce: a reward's error is prefixed with its name once, whether or not
// the reward named itself, so that no message reads "reward classifier: reward classifier: ...";
// a composite reports a failing part so.
func TestNameErrorNamesARewardOnce(t *testing.T) {
	base := errors.New("no target class given")
	for _, c := range []struct {
		err  error
		want string
	}{
		{base, "reward classifier: no target class given"},
		{errors.New("reward classifier: no target class given"), "reward classifier: no target class given"},
		// Another reward's name is not this reward's.
		{errors.New("reward ocr: empty"), "reward classifier: reward ocr: empty"},
	} {
		got := rewards.NameError("classifier", c.err)
		if got.Error() != c.want || !errors.Is(got, c.err) {
			t.Errorf("NameError(%q) = %q, want %q wrapping the original", c.err, got, c.want)
		}
	}

	self := &stub{name: "classifier", scores: []float64{0}, hook: func(context.Context) error {
		return errors.New("reward classifier: no target class given")
	}}
	comp, err := rewards.NewComposite([]rewards.Reward{self, &stub{name: "color", scores: []float64{1}}}, []float64{0.5, 0.5})
	if err != nil {
		t.Fatal(err)
	}
	imgs := pixels.Images{N: 1, C: 3, H: 2, W: 2, Pix: make([]float32, 12)}
	err = comp.Score(context.Background(), imgs, "", make([]float64, 1))
	if err == nil || err.Error() != "reward classifier: no target class given" {
		t.Errorf("composite error %q, want the part's own message once", err)
	}
}
