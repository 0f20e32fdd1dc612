package models_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
)

func TestSessionReadsMetadataOfRealModel(t *testing.T) {
	modeltest.Runtime(t)
	path := testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	s, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	want := map[string]string{"zt": "zt float32[?,1,32,32]", "t": "t float32[?]", "cond": "cond int64[?]"}
	if len(s.Inputs) != len(want) {
		t.Fatalf("inputs = %v, want %d", s.Inputs, len(want))
	}
	for _, in := range s.Inputs {
		if got := in.String(); got != want[in.Name] {
			t.Errorf("input %s described as %q, want %q", in.Name, got, want[in.Name])
		}
	}
	if out, err := s.RequireOutput("output"); err != nil || out.Type != models.Float32 {
		t.Errorf("output = %v, %v", out, err)
	}
	_, err = s.RequireInput("latents")
	var missing *models.MissingTensorError
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), `"latents"`) || !strings.Contains(err.Error(), "zt") {
		t.Errorf("missing input error = %v", err)
	}
}

func TestCallRunsClassifierOnMNIST(t *testing.T) {
	modeltest.Runtime(t)
	path := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	s, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := s.NewCall(models.Shapes{"input": {2, 1, 28, 28}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	in, err := c.Float32("input")
	if err != nil {
		t.Fatal(err)
	}
	// Row 0: a vertical bar (a "1"); row 1: all background. Values in [-1, 1] as the model expects.
	for i := range in {
		in[i] = -1
	}
	for y := 4; y < 24; y++ {
		for x := 13; x < 16; x++ {
			in[y*28+x] = 1
		}
	}
	for run := range 2 { // the second run reuses the output buffers adopted in the first
		if err := c.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		out, shape, err := c.Output("output")
		if err != nil {
			t.Fatal(err)
		}
		if len(shape) != 2 || shape[0] != 2 || shape[1] != 10 {
			t.Fatalf("run %d: output shape %v", run, shape)
		}
		best := 0
		for k := range 10 {
			if out[k] > out[best] {
				best = k
			}
		}
		if best != 1 {
			t.Errorf("run %d: a vertical bar classified as %d (logits %v)", run, best, out[:10])
		}
	}
	if runs, d := c.RunStats(); runs != 2 || d <= 0 {
		t.Errorf("RunStats = %d, %v", runs, d)
	}
}

func TestCallRejectsBadShapesAndNames(t *testing.T) {
	modeltest.Runtime(t)
	s, err := models.Open(testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, shapes := range []models.Shapes{
		{"input": {2, 1, 32, 32}},               // fixed dims disagree
		{"input": {2, 28, 28}},                  // wrong rank
		{},                                      // missing
		{"input": {1, 1, 28, 28}, "extra": {1}}, // unknown name
	} {
		if c, err := s.NewCall(shapes); err == nil {
			c.Close()
			t.Errorf("NewCall(%v) succeeded", shapes)
		}
	}
}

func TestOpenErrorsNameTheProblem(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	if _, err := models.Open(filepath.Join(dir, "nope.onnx")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: %v", err)
	}
	junk := filepath.Join(dir, "junk.onnx")
	if err := os.WriteFile(junk, []byte("this is not a protobuf"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := models.Open(junk); err == nil || !strings.Contains(err.Error(), "not a valid ONNX model") {
		t.Errorf("junk file: %v", err)
	}
}

func TestUnavailableProviderIsAClearError(t *testing.T) {
	modeltest.Runtime(t)
	path := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	s, err := models.Open(path, models.WithProvider("cuda", 0))
	if err == nil {
		s.Close()
		t.Skip("this ONNX Runtime library has CUDA; nothing to check")
	}
	for _, want := range []string{"execution provider cuda is not available in the loaded ONNX Runtime", models.LibraryEnv, "--provider auto, webgpu or cpu"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := models.Open(path, models.WithProvider("tpu", 0)); err == nil || !strings.Contains(err.Error(), "valid: auto, cpu, webgpu, cuda") {
		t.Errorf("unknown provider error = %v", err)
	}
}

func TestFindLibraryExplainsTheFix(t *testing.T) {
	t.Setenv(models.LibraryEnv, "")
	_, err := models.FindLibrary("/nonexistent/libonnxruntime.so")
	if !errors.Is(err, models.ErrNoRuntime) || !strings.Contains(err.Error(), "--ort-lib") {
		t.Errorf("explicit missing path: %v", err)
	}
	t.Setenv(models.LibraryEnv, "/nonexistent/other.so")
	if _, err := models.FindLibrary(""); err == nil || !strings.Contains(err.Error(), "$"+models.LibraryEnv) {
		t.Errorf("env missing path: %v", err)
	}
}
