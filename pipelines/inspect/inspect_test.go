package inspect

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pipelines"
)

func ti(name string, typ models.ElemType, dims ...int64) models.TensorInfo {
	return models.TensorInfo{Name: name, Type: typ, Dims: dims}
}

func TestGuess(t *testing.T) {
	f, i64 := models.Float32, models.Int64
	cases := []struct {
		in, out []models.TensorInfo
		want    Role
	}{
		{[]models.TensorInfo{ti("zt", f, -1, 1, 32, 32), ti("t", f, -1), ti("cond", i64, -1)}, []models.TensorInfo{ti("output", f, -1, 1, 32, 32)}, Denoiser},
		{[]models.TensorInfo{ti("sample", models.Float16, 2, 4, 64, 64), ti("timestep", i64, 1), ti("encoder_hidden_states", f, 2, 77, 768)}, []models.TensorInfo{ti("out_sample", f, 2, 4, 64, 64)}, Denoiser},
		{[]models.TensorInfo{ti("input_ids", models.Int32, 1, 77)}, []models.TensorInfo{ti("last_hidden_state", f, 1, 77, 768)}, TextEncoder},
		{[]models.TensorInfo{ti("latent_sample", f, 1, 4, 64, 64)}, []models.TensorInfo{ti("sample", f, 1, 3, 512, 512)}, VAEDecoder},
		{[]models.TensorInfo{ti("input", f, -1, 1, 28, 28)}, []models.TensorInfo{ti("output", f, -1, 10)}, ImageToVector},
		{[]models.TensorInfo{ti("x", f, -1, 3, -1, -1)}, []models.TensorInfo{ti("sigmoid_0.tmp_0", f, -1, 1, -1, -1)}, ImageToMap},
		{[]models.TensorInfo{ti("embedding", f, 1, 512)}, []models.TensorInfo{ti("score", f, 1, 1)}, Unknown},
	}
	for _, c := range cases {
		if got := Guess(c.in, c.out); got != c.want {
			t.Errorf("Guess(%v -> %v) = %s, want %s", c.in, c.out, got, c.want)
		}
	}
}

func TestDescribeRealModels(t *testing.T) {
	modeltest.Runtime(t)
	dit := testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	r, err := Describe(dit, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := r.Components[0]
	if r.Format != "onnx" || c.Role != Denoiser || len(c.Inputs) != 3 || c.Inputs[0].Name != "zt" || c.Inputs[0].Type != "float32" {
		t.Fatalf("report %+v", r)
	}
	// The suggested manifest names the real tensors and, with its CHECK lines filled in as the
	// example does, loads.
	m := strings.NewReplacer("prediction: epsilon ", "prediction: flow ", "kind: class ", "kind: none #").Replace(r.Manifest)
	for _, want := range []string{"sample: zt", "time: t", "cond: cond", "output: output", "shape: [1, 32, 32]"} {
		if !strings.Contains(r.Manifest, want) {
			t.Errorf("suggested manifest lacks %q:\n%s", want, r.Manifest)
		}
	}
	if _, err := pipelines.ParseManifest([]byte(m)); err != nil {
		t.Errorf("the suggested manifest does not load: %v\n%s", err, m)
	}

	r, err = Describe(filepath.Join("..", "..", "examples", "mnist-dit-rf.yaml"), t.TempDir())
	if err != nil || r.Format != "manifest" || !strings.Contains(r.Pipeline, "flow prediction") {
		t.Errorf("manifest report %+v, %v", r, err)
	}
	r, err = Describe("glyphs", t.TempDir())
	if err != nil || r.Format != "built-in" || r.Components[0].Role != Denoiser {
		t.Errorf("glyphs report %+v, %v", r, err)
	}
	if _, err := Describe(filepath.Join(t.TempDir(), "nope.onnx"), t.TempDir()); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Describe(t.TempDir(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "model_index.json") {
		t.Errorf("plain folder: %v", err)
	}
}
