package rewards_test

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/onnxpb"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/rewards"
)

// laionHead reads the real LAION head's weight [512] and bias from its ONNX file (one Gemm,
// score = embedding . weight + bias), so the test computes scores without ONNX Runtime.
func laionHead(t *testing.T, path string) (w []float64, b float64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	floats := func(raw []byte) []float64 {
		out := make([]float64, len(raw)/4)
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
		}
		return out
	}
	for _, init := range m.Graph.Initializer {
		switch init.Name {
		case "weight":
			w = floats(init.RawData)
		case "bias":
			b = floats(init.RawData)[0]
		}
	}
	if len(w) != 512 {
		t.Fatalf("LAION head: weight has %d values, want 512", len(w))
	}
	return w, b
}

// TestAestheticTwoStages runs a synthetic CLIP ViT-B/32-shaped encoder into the real LAION
// aesthetic head and checks every score against w . (e/|e|) + b computed here from the
// encoder's embeddings and the head's weights. The head takes one embedding per Run; the
// reward still scores a batch of 5.
func TestAestheticTwoStages(t *testing.T) {
	headPath := testenv.SharedFile(t, "models/laion-aesthetic-vitb32-linear/laion_aesthetic.onnx")
	data, err := synth.CLIPVision(synth.ViT{Size: 224, Patch: 32, Dim: 32, Seed: 2}, 512)
	encPath := writeModel(t, "clip_vision.onnx", data, err)
	const n = 5
	imgs := randomImages(4, n, 3, 224, 224)
	emb := runModel(t, encPath, map[string][]float32{synth.PixelValues: normalised(imgs, rewards.CLIPMean, rewards.CLIPStd)}, nil,
		models.Shapes{synth.PixelValues: {n, 3, 224, 224}}, synth.ImageEmbeds)[0]
	w, b := laionHead(t, headPath)
	// A model folder laid out as `fksteer models pull laion-aesthetic-vitb32` leaves it.
	modelDir := t.TempDir()
	if err := os.Symlink(filepath.Dir(headPath), filepath.Join(modelDir, filepath.Dir(rewards.DefaultAestheticHead))); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{
		"aesthetic:encoder=" + encPath + ",head=" + headPath,
		"aesthetic:encoder=" + encPath, // the head from the model folder
	} {
		r, err := rewards.Parse(spec, rewards.Env{ModelDir: modelDir})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float64, n)
		if err := r.Score(context.Background(), imgs, "", got); err != nil {
			t.Fatal(err)
		}
		r.Close()
		for i := range n {
			e := emb[i*512 : (i+1)*512]
			var norm, dot float64
			for j, v := range e {
				norm += float64(v) * float64(v)
				dot += float64(v) * w[j]
			}
			want := dot/math.Sqrt(norm) + b
			if math.Abs(got[i]-want) > 1e-4 {
				t.Errorf("%s: image %d scores %g, want %g", spec, i, got[i], want)
			}
		}
	}
	if _, err := rewards.Parse("aesthetic:encoder="+encPath, rewards.Env{ModelDir: t.TempDir()}); err == nil {
		t.Error("a missing default head was accepted")
	}
}
