package rewards_test

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/tokenizers/clip"
)

// TestPreferenceMatchesDirectComputation scores images with a synthetic CLIPModel-shaped scorer
// and the real CLIP tokenizer, and checks every score against the model run here directly on
// the same pixels and token ids: logits_per_image's diagonal, normalised as ImageReward is;
// LogitScale times the cosine of the embeddings; and the PickScore preset.
func TestPreferenceMatchesDirectComputation(t *testing.T) {
	tokDir := filepath.Dir(testenv.SharedFile(t, "tokenizers/clip/vocab.json"))
	data, err := synth.CLIPScorer(synth.ViT{Size: 32, Patch: 16, Dim: 16, Seed: 5}, synth.CLIPText{Length: 77, Vocab: 64}, 8)
	path := writeModel(t, "clip.onnx", data, err)
	tok, err := clip.Load(tokDir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	imgs := randomImages(3, n, 3, 32, 32)
	prompt := "a photo of a red cat"
	row, _ := tok.EncodePadded(prompt)
	ids := make([]int64, 0, n*77)
	for range n {
		for _, id := range row {
			ids = append(ids, int64(id))
		}
	}
	outs := runModel(t, path,
		map[string][]float32{synth.PixelValues: normalised(imgs, rewards.CLIPMean, rewards.CLIPStd)},
		map[string][]int64{synth.InputIDs: ids},
		models.Shapes{synth.PixelValues: {n, 3, 32, 32}, synth.InputIDs: {n, 77}},
		synth.LogitsPerImage, synth.ImageEmbeds, synth.TextEmbeds)
	logits, img, txt := outs[0], outs[1], outs[2]

	score := func(spec string) []float64 {
		t.Helper()
		r, err := rewards.Parse("preference:model="+path+",tokenizer="+tokDir+spec, rewards.Env{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got := make([]float64, n)
		if err := r.Score(context.Background(), imgs, prompt, got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	imageReward := score(",shift=0.16717362830052426,scale=1.0333394966054072")
	cosine := score(",score=cosine,logit-scale=100")
	pick := score(",preset=pickscore")
	for i := range n {
		diag := float64(logits[i*n+i])
		if want := (diag - 0.16717362830052426) / 1.0333394966054072; math.Abs(imageReward[i]-want) > 1e-5 {
			t.Errorf("image %d: normalised logit %g, want %g", i, imageReward[i], want)
		}
		want := 100 * cos64(img[i*8:(i+1)*8], txt[i*8:(i+1)*8])
		if math.Abs(cosine[i]-want) > 1e-4 || math.Abs(pick[i]-want) > 1e-4 || math.Abs(want-diag) > 1e-3 {
			t.Errorf("image %d: cosine %g, pickscore %g, want 100 cos = %g (logit %g)", i, cosine[i], pick[i], want, diag)
		}
	}
	// The prompt matters: the same images score differently for another prompt.
	r, err := rewards.Parse("preference:model="+path+",tokenizer="+tokDir, rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	other := make([]float64, n)
	if err := r.Score(context.Background(), imgs, "an old map of the sea", other); err != nil {
		t.Fatal(err)
	}
	if math.Abs(other[0]-float64(logits[0])) < 1e-6 {
		t.Errorf("another prompt gave the same score %g", other[0])
	}
}

func TestPreferenceConfigurationErrors(t *testing.T) {
	data, err := synth.CLIPScorer(synth.ViT{Size: 32, Patch: 16, Dim: 8, Seed: 1}, synth.CLIPText{Length: 77, Vocab: 16}, 4)
	path := writeModel(t, "clip.onnx", data, err)
	for spec, want := range map[string]string{
		"preference:model=" + path:                        "tokenizer=DIR",
		"preference:model=" + path + ",text=none":         "neither the image",
		"preference:model=" + path + ",preset=aesthetics": "not one of",
	} {
		if _, err := rewards.Parse(spec, rewards.Env{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", spec, err, want)
		}
	}
}
