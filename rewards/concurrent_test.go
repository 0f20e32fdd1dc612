package rewards

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

// TestConcurrentScoresRunInParallel shares one reward between goroutines, as batch workers do:
// a DINO reward (a pooled model call, preprocessing scratch) and a composite of it with the
// colour reward. Every concurrent Score must give what a Score alone gives (run it with -race:
// the race detector checks that no call or buffer is shared). While one model call is out, as
// a Score in flight holds it, the others do not wait for it: they run on calls of their own.
func TestConcurrentScoresRunInParallel(t *testing.T) {
	dino := synthDINO(t)
	comp, err := NewComposite([]Reward{dino, NewColor([3]float64{0.8, 0.2, 0.2})}, []float64{1, 0.5})
	if err != nil {
		t.Fatal(err)
	}
	const n, batches = 6, 4
	imgs := make([]pixels.Images, batches)
	for b := range imgs {
		rng := rand.New(rand.NewPCG(uint64(b), 3))
		imgs[b] = pixels.NewImages(n, 3, 40, 40)
		for i := range imgs[b].Pix {
			imgs[b].Pix[i] = rng.Float32()
		}
	}
	for _, r := range []Reward{dino, comp} {
		want := make([][]float64, batches)
		for b := range want {
			want[b] = make([]float64, n)
			if err := r.Score(context.Background(), imgs[b], "", want[b]); err != nil {
				t.Fatal(err)
			}
		}
		// Hold the backbone's call for this batch shape, as a Score in flight would.
		pool, shape := &dino.model.calls.pool, models.Shapes{dino.model.input.Name: dino.model.prep.shape(n)}
		held, err := pool.Get(shape.Key(), func() (*models.Call, error) { return dino.model.sess.NewCall(shape) })
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				got := make([]float64, n)
				for i := range 5 {
					b := (g + i) % batches
					if err := r.Score(context.Background(), imgs[b], "", got); err != nil {
						t.Error(err)
						return
					}
					if !slices.Equal(got, want[b]) {
						t.Errorf("%s: a concurrent Score of batch %d gave %v, alone %v", r.Name(), b, got, want[b])
					}
				}
			})
		}
		wg.Wait()
		pool.Put(shape.Key(), held)
		if idle := pool.Idle()[shape.Key()]; idle < 2 {
			t.Errorf("%s: %d idle calls after concurrent Scores; the Scores should have run on calls besides the held one", r.Name(), idle)
		}
	}
}
