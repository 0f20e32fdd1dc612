package synth_test

import (
	"bytes"
	"context"
	"math"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/synth"
)

// TestImageRewardLayout checks the tensors of the ImageReward-shaped scorer and that its score
// reads the prompt through the attention mask as BERT does: ids under mask 0 change nothing,
// ids under mask 1 and the image do change the score.
func TestImageRewardLayout(t *testing.T) {
	c, text := synth.ViT{Size: 32, Patch: 16, Dim: 16, Seed: 7}, synth.BLIPText{Length: 35, Vocab: 64}
	data, err := synth.ImageReward(c, text)
	again, err2 := synth.ImageReward(c, text)
	if err := cmpErr(err, err2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Error("the same configuration gave different bytes")
	}
	s := open(t, "imagereward.onnx", data, nil)
	for _, c := range []struct {
		output bool
		name   string
		want   []int64
	}{
		{false, synth.PixelValues, []int64{-1, 3, 32, 32}},
		{false, synth.InputIDs, []int64{-1, 35}},
		{false, synth.AttentionMask, []int64{-1, 35}},
		{true, synth.Rewards, []int64{-1, 1}},
	} {
		if got := dims(t, s, c.output, c.name); !slices.Equal(got, c.want) {
			t.Errorf("%s dims %v, want %v", c.name, got, c.want)
		}
	}
	if len(s.Inputs) != 3 || len(s.Outputs) != 1 {
		t.Errorf("inputs %v, outputs %v; want 3 and 1", s.Inputs, s.Outputs)
	}

	pix := noise(1, 3*32*32)
	row := append([]int64{101, 1037, 6302, 1997, 1037, 4937, 102}, make([]int64, 28)...)
	mask := make([]int64, 35)
	for i := range 7 {
		mask[i] = 1
	}
	score := func(pix []float32, ids, mask []int64) float32 {
		t.Helper()
		call, err := s.NewCall(models.Shapes{synth.PixelValues: {1, 3, 32, 32}, synth.InputIDs: {1, 35}, synth.AttentionMask: {1, 35}})
		if err != nil {
			t.Fatal(err)
		}
		defer call.Close()
		for name, v := range map[string][]int64{synth.InputIDs: ids, synth.AttentionMask: mask} {
			buf, err := call.Int64(name)
			if err != nil {
				t.Fatal(err)
			}
			copy(buf, v)
		}
		buf, err := call.Float32(synth.PixelValues)
		if err != nil {
			t.Fatal(err)
		}
		copy(buf, pix)
		if err := call.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		out, _, err := call.Output(synth.Rewards)
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	base := score(pix, row, mask)
	if math.IsNaN(float64(base)) || math.IsInf(float64(base), 0) {
		t.Fatalf("score %g", base)
	}
	hidden := slices.Clone(row)
	hidden[20] = 999 // under mask 0
	shown := slices.Clone(row)
	shown[3] = 999
	unmasked := slices.Repeat([]int64{1}, 35)
	if got := score(pix, hidden, mask); got != base {
		t.Errorf("an id under mask 0 changed the score: %g -> %g", base, got)
	}
	for name, got := range map[string]float32{
		"an id under mask 1": score(pix, shown, mask),
		"the mask":           score(pix, row, unmasked),
		"the image":          score(noise(2, 3*32*32), row, mask),
	} {
		if math.Abs(float64(got-base)) < 1e-4 {
			t.Errorf("%s left the score at %g (was %g)", name, got, base)
		}
	}
}
