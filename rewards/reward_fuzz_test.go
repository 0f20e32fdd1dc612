package rewards_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// FuzzParse feeds arbitrary reward specs to rewards.Parse (seeds: testdata/fuzz/FuzzParse),
// in an empty working folder with an empty model folder, so that no spec can open a model: a
// spec naming models (classifier, ocr, dino, preference, aesthetic) must fail with an error.
// Specs naming a path with a slash are skipped, so that nothing outside that folder (such as
// /dev/zero) is read. Properties: no panic; Parse returns a reward or an error, never both or
// neither; and a reward it builds (colour rewards and weighted sums of them) scores a small
// batch with scores that are finite (unless its weights add up to near MaxFloat64) and closes
// cleanly.
func FuzzParse(f *testing.F) {
	dir := f.TempDir() // the working folder, set inside the target: the seeds are read relative to it
	env := rewards.Env{ModelDir: f.TempDir()}
	imgs := pixels.NewImages(2, 3, 2, 2)
	for i := range imgs.Pix {
		imgs.Pix[i] = float32(i%5) / 4
	}
	f.Fuzz(func(t *testing.T, spec string) {
		if strings.Contains(spec, "/") {
			t.Skip("names a path outside the working folder")
		}
		t.Chdir(dir)
		r, err := rewards.Parse(spec, env)
		switch {
		case err != nil && r != nil:
			t.Fatalf("Parse(%q) returned a reward beside the error %v", spec, err)
		case err != nil:
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("Parse(%q): empty error message", spec)
			}
			return
		case r == nil:
			t.Fatalf("Parse(%q) returned neither a reward nor an error", spec)
		}
		defer func() {
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		scores := make([]float64, imgs.N)
		if err := r.Score(context.Background(), imgs, "a prompt", scores); err != nil {
			t.Fatalf("Parse(%q) = %s, which fails to score: %v", spec, r.Name(), err)
		}
		// Colour scores lie in [0, 1], so a sum can only overflow with weights near MaxFloat64.
		bound := 1.0
		if c, ok := r.(*rewards.Composite); ok {
			bound = 0
			for _, p := range c.Parts() {
				bound += math.Abs(p.Weight)
			}
		}
		for i, s := range scores {
			if math.IsNaN(s) || bound < 1e300 && math.IsInf(s, 0) {
				t.Fatalf("Parse(%q) = %s scores image %d %v", spec, r.Name(), i, s)
			}
		}
	})
}
