package synth_test

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/synth"
)

// open loads a built model into an ONNX Runtime session.
func open(t *testing.T, name string, data []byte, err error) *models.Session {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	modeltest.Runtime(t)
	s, err := models.OpenBytes(name, data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// noise fills a slice with seeded uniform values in [-1, 1].
func noise(seed uint64, n int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(2*rng.Float64() - 1)
	}
	return v
}

func dims(t *testing.T, s *models.Session, output bool, name string) []int64 {
	t.Helper()
	var info models.TensorInfo
	var ok bool
	if output {
		info, ok = s.Output(name)
	} else {
		info, ok = s.Input(name)
	}
	if !ok {
		t.Fatalf("model has no tensor %s (inputs %v, outputs %v)", name, s.Inputs, s.Outputs)
	}
	return info.Dims
}

func TestBuildersAreDeterministic(t *testing.T) {
	c := synth.ViT{Size: 28, Patch: 14, Dim: 8, Registers: 4, Seed: 3}
	a, err1 := synth.DINOv2(c)
	b, err2 := synth.DINOv2(c)
	c.Seed = 4
	other, err3 := synth.DINOv2(c)
	if err := cmpErr(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || bytes.Equal(a, other) {
		t.Error("same configuration must give the same bytes, another seed other bytes")
	}
	if _, err := synth.DINOv2(synth.ViT{Size: 30, Patch: 14, Dim: 8}); err == nil {
		t.Error("a size that is no multiple of the patch was accepted")
	}
}

func cmpErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func TestDINOv2Layout(t *testing.T) {
	for _, regs := range []int{0, 4} {
		c := synth.ViT{Size: 56, Patch: 14, Dim: 16, Registers: regs, Seed: 1}
		data, err := synth.DINOv2(c)
		s := open(t, "dinov2", data, err)
		if got := dims(t, s, false, synth.PixelValues); !slices.Equal(got, []int64{-1, 3, 56, 56}) {
			t.Errorf("pixel_values dims %v", got)
		}
		// 1 class token + registers + (56/14)^2 = 16 patches.
		if got := dims(t, s, true, synth.LastHiddenState); !slices.Equal(got, []int64{-1, int64(17 + regs), 16}) {
			t.Errorf("registers %d: last_hidden_state dims %v", regs, got)
		}
		call, err := s.NewCall(models.Shapes{synth.PixelValues: {2, 3, 56, 56}})
		if err != nil {
			t.Fatal(err)
		}
		in, _ := call.Float32(synth.PixelValues)
		copy(in, noise(7, len(in)))
		if err := call.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		hidden, shape, _ := call.Output(synth.LastHiddenState)
		pooled, _, _ := call.Output(synth.PoolerOutput)
		tokens := int(shape[1])
		for i := range 2 {
			if !slices.Equal(pooled[i*16:(i+1)*16], hidden[i*tokens*16:i*tokens*16+16]) {
				t.Errorf("image %d: pooler_output is not the class token", i)
			}
		}
		// The class token must depend on the image (attention mixes the patches into it).
		if slices.Equal(pooled[:16], pooled[16:]) {
			t.Error("two different images have the same class token")
		}
		call.Close()
	}
}

func TestCLIPVisionLayout(t *testing.T) {
	data, err := synth.CLIPVision(synth.ViT{Size: 224, Patch: 32, Dim: 32, Seed: 2}, 512)
	s := open(t, "clip_vision", data, err)
	if got := dims(t, s, true, synth.ImageEmbeds); !slices.Equal(got, []int64{-1, 512}) {
		t.Errorf("image_embeds dims %v", got)
	}
	if got := dims(t, s, true, synth.LastHiddenState); !slices.Equal(got, []int64{-1, 50, 32}) {
		t.Errorf("last_hidden_state dims %v (ViT-B/32 at 224 has 50 tokens)", got)
	}
}

func TestCLIPScorerIsScaledCosine(t *testing.T) {
	c := synth.ViT{Size: 32, Patch: 16, Dim: 16, Seed: 5}
	data, err := synth.CLIPScorer(c, synth.CLIPText{Length: 77, Vocab: 64}, 8)
	s := open(t, "clip", data, err)
	const n = 3
	call, err := s.NewCall(models.Shapes{synth.PixelValues: {n, 3, 32, 32}, synth.InputIDs: {n, 77}})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	px, _ := call.Float32(synth.PixelValues)
	copy(px, noise(9, len(px)))
	ids, _ := call.Int64(synth.InputIDs)
	// Three prompts of different lengths, padded with EOS as SD 1.x's tokenizer does.
	for i := range n {
		row := ids[i*77 : (i+1)*77]
		row[0] = 49406
		for j := 1; j <= 2+i; j++ {
			row[j] = int64(320 + 7*j + i)
		}
		for j := 3 + i; j < 77; j++ {
			row[j] = 49407
		}
	}
	if err := call.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	logits, shape, _ := call.Output(synth.LogitsPerImage)
	img, _, _ := call.Output(synth.ImageEmbeds)
	txt, _, _ := call.Output(synth.TextEmbeds)
	if !slices.Equal(shape, []int64{n, n}) {
		t.Fatalf("logits_per_image shape %v", shape)
	}
	for i := range n {
		if d := dot(img[i*8:(i+1)*8], img[i*8:(i+1)*8]); math.Abs(d-1) > 1e-5 {
			t.Errorf("image_embeds %d has squared norm %g", i, d)
		}
		for j := range n {
			want := synth.LogitScale * dot(img[i*8:(i+1)*8], txt[j*8:(j+1)*8])
			if math.Abs(float64(logits[i*n+j])-want) > 1e-4 {
				t.Errorf("logits[%d,%d] = %g, want %g", i, j, logits[i*n+j], want)
			}
		}
	}
	if slices.Equal(txt[:8], txt[8:16]) {
		t.Error("two different prompts have the same text embedding")
	}
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
