package rewards_test

import (
	"context"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// TestDINOMatchesDirectComputation runs the DINO reward on a synthetic DINOv2-shaped backbone
// with 4 register tokens and checks every score against the cosine similarities computed here
// from the model's own tokens, for both reductions and several patch weights. Images are at the
// model's size and resize equals it, so preprocessing is ImageNet normalisation alone.
func TestDINOMatchesDirectComputation(t *testing.T) {
	vit := synth.ViT{Size: 56, Patch: 14, Dim: 16, Registers: 4, Seed: 11}
	data, err := synth.DINOv2(vit)
	path := writeModel(t, "dino.onnx", data, err)
	refs := randomImages(1, 2, 3, 56, 56)
	imgs := randomImages(2, 4, 3, 56, 56)
	copy(imgs.At(3), refs.At(1)) // image 3 is reference 1

	// The tokens of the references and the images, straight from the model.
	all := pixels.Images{N: 6, C: 3, H: 56, W: 56, Pix: append(append([]float32(nil), refs.Pix...), imgs.Pix...)}
	hidden := runModel(t, path, map[string][]float32{synth.PixelValues: normalised(all, rewards.ImageNetMean, rewards.ImageNetStd)}, nil,
		models.Shapes{synth.PixelValues: {6, 3, 56, 56}}, synth.LastHiddenState)[0]
	tokens, dim := vit.Tokens(), vit.Dim
	token := func(img, t int) []float32 { return hidden[(img*tokens+t)*dim : (img*tokens+t+1)*dim] }
	firstPatch := 1 + vit.Registers
	sim := func(img, ref int, w float64) float64 {
		s := (1 - w) * cos64(token(img, 0), token(ref, 0))
		var ps float64
		for p := firstPatch; p < tokens; p++ {
			ps += cos64(token(img, p), token(ref, p))
		}
		return s + w*ps/float64(tokens-firstPatch)
	}
	for _, tc := range []struct {
		reduce string
		patch  float64
	}{{"max", 0}, {"mean", 0}, {"max", 0.3}, {"mean", 1}} {
		r, err := rewards.NewDINO(path, []pixels.Images{refs}, rewards.DINOOptions{
			Image: rewards.ImageOptions{Resize: 56}, Registers: -1, Reduce: tc.reduce, PatchWeight: tc.patch,
		})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float64, imgs.N)
		if err := r.Score(context.Background(), imgs, "", got); err != nil {
			t.Fatal(err)
		}
		r.Close()
		for i := range imgs.N {
			a, b := sim(2+i, 0, tc.patch), sim(2+i, 1, tc.patch)
			want := max(a, b)
			if tc.reduce == "mean" {
				want = (a + b) / 2
			}
			if math.Abs(got[i]-want) > 1e-5 {
				t.Errorf("reduce %s, patch %g, image %d: score %.7f, want %.7f", tc.reduce, tc.patch, i, got[i], want)
			}
		}
		if tc.reduce == "max" && math.Abs(got[3]-1) > 1e-5 {
			t.Errorf("an image identical to a reference scores %g, want 1", got[3])
		}
	}
}

// TestDINOSpecWithReferenceFiles builds the reward from a spec, with references given as two
// ref= files and as a folder: scoring the (8-bit) reference images themselves gives 1.
func TestDINOSpecWithReferenceFiles(t *testing.T) {
	data, err := synth.DINOv2(synth.ViT{Size: 28, Patch: 14, Dim: 8, Seed: 3})
	path := writeModel(t, "dino.onnx", data, err)
	dir := t.TempDir()
	refs := randomImages(5, 2, 3, 40, 60)
	var files []string
	for i := range refs.N {
		f := filepath.Join(dir, []string{"a.png", "b.png"}[i])
		files = append(files, f)
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(out, toRGBA(refs, i)); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	loaded := pixels.NewImages(2, 3, 40, 60)
	for i, f := range files {
		img, err := rewards.LoadImage(f)
		if err != nil {
			t.Fatal(err)
		}
		copy(loaded.At(i), img.Pix)
	}
	for _, spec := range []string{
		"dino:model=" + path + ",ref=" + files[0] + ",ref=" + files[1],
		"dino:model=" + path + ",ref=" + dir + ",reduce=max,patch=0.5",
	} {
		r, err := rewards.Parse(spec, rewards.Env{})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float64, 2)
		if err := r.Score(context.Background(), loaded, "", got); err != nil {
			t.Fatal(err)
		}
		r.Close()
		for i, s := range got {
			if math.Abs(s-1) > 1e-5 {
				t.Errorf("%s: reference %d scores %g against itself, want 1", spec, i, s)
			}
		}
	}
	if _, err := rewards.Parse("dino:model="+path, rewards.Env{}); err == nil {
		t.Error("a dino spec without ref= was accepted")
	}
	if _, err := rewards.Parse("dino:model="+path+",ref="+files[0]+",reduce=median", rewards.Env{}); err == nil {
		t.Error("reduce=median was accepted")
	}
}

// TestDINORejectsOtherLayouts: a token output must be [batch, tokens, dim].
func TestDINORejectsOtherLayouts(t *testing.T) {
	data, err := synth.DINOv2(synth.ViT{Size: 28, Patch: 14, Dim: 8, Seed: 3})
	path := writeModel(t, "dino.onnx", data, err)
	refs := randomImages(1, 1, 3, 28, 28)
	_, err = rewards.NewDINO(path, []pixels.Images{refs}, rewards.DINOOptions{Output: synth.PoolerOutput, Registers: -1})
	if err == nil || !strings.Contains(err.Error(), "[batch, tokens, dim]") {
		t.Errorf("pooler_output as the token output: error %v", err)
	}
	_, err = rewards.NewDINO(path, []pixels.Images{refs}, rewards.DINOOptions{Output: "tokens", Registers: -1})
	if err == nil || !strings.Contains(err.Error(), "last_hidden_state") {
		t.Errorf("a missing output: error %v, want one listing the real outputs", err)
	}
}
