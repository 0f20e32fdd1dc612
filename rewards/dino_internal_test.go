package rewards

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/pixels"
)

func TestInferRegisters(t *testing.T) {
	for _, tc := range []struct{ tokens, h, w, want int }{
		{257, 224, 224, 0},       // DINOv2 ViT/14 at 224: 16 x 16 patches
		{261, 224, 224, 4},       // ... with 4 registers
		{21, 56, 56, 4},          // the synthetic test model
		{1 + 16*12, 224, 168, 0}, // a 224 x 168 input: 16 x 12 patches
		{40, 56, 56, -1},         // 23 to 39 patch tokens: no grid of square patches tiles 56 x 56
	} {
		if got := inferRegisters(tc.tokens, tc.h, tc.w); got != tc.want {
			t.Errorf("inferRegisters(%d, %d, %d) = %d, want %d", tc.tokens, tc.h, tc.w, got, tc.want)
		}
	}
}

// TestDINOEmbedsReferencesOnce: the references run through the backbone once, when the reward
// is built; every Score is then one Run for the whole batch, and the cached embeddings stay.
func TestDINOEmbedsReferencesOnce(t *testing.T) {
	r := synthDINO(t)
	if r.registers != 4 || r.patches != 4 || r.dim != 8 {
		t.Errorf("layout: %d registers, %d patches, dim %d; want 4, 4, 8", r.registers, r.patches, r.dim)
	}
	before := r.References()
	runs := func() int {
		n := 0
		pool := &r.model.calls.pool
		for key := range pool.Idle() { // one idle call per shape: nothing scores meanwhile
			c, err := pool.Get(key, nil)
			if err != nil {
				t.Fatal(err)
			}
			k, _ := c.RunStats()
			n += k
			pool.Put(key, c)
		}
		return n
	}
	if got := runs(); got != 1 {
		t.Errorf("%d runs to embed 3 references, want 1", got)
	}
	imgs := pixels.NewImages(16, 3, 64, 64)
	scores := make([]float64, 16)
	for range 3 {
		if err := r.Score(context.Background(), imgs, "", scores); err != nil {
			t.Fatal(err)
		}
	}
	if got := runs(); got != 4 {
		t.Errorf("%d runs after 3 scorings of 16 images, want 1 + 3", got)
	}
	after := r.References()
	for i := range before {
		if !slices.Equal(before[i], after[i]) {
			t.Errorf("reference %d's embedding changed", i)
		}
	}
}

// synthDINO is a DINO reward on a synthetic DINOv2 backbone (28x28 inputs, 4 registers, 4
// patches of dim 8) with 3 random references, closed when the test ends.
func synthDINO(t *testing.T) *DINO {
	t.Helper()
	modeltest.Runtime(t)
	data, err := synth.DINOv2(synth.ViT{Size: 28, Patch: 14, Dim: 8, Registers: 4, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/dino.onnx"
	if err := writeFile(path, data); err != nil {
		t.Fatal(err)
	}
	refs := pixels.NewImages(3, 3, 28, 28)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range refs.Pix {
		refs.Pix[i] = rng.Float32()
	}
	r, err := NewDINO(path, []pixels.Images{refs}, DINOOptions{Registers: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
