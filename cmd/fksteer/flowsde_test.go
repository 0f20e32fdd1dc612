package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
)

// TestFlowSDERecordsItsNoiseLevel: flow-sde without --eta draws with Flow-GRPO's 0.7, and the
// PNG's parameters must say 0.7, not the 0 the user left unset, or regenerating from them would
// not reproduce the image.
func TestFlowSDERecordsItsNoiseLevel(t *testing.T) {
	modeltest.Runtime(t)
	testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	out := t.TempDir()
	manifest := filepath.Join(testenv.ModuleRoot(), "examples", "mnist-dit-rf.yaml")
	images, _ := generateJSON(t, "--model", manifest, "--sampler", "flow-sde", "--steps", "3", "--provider", "cpu", "--out", out)
	data, err := os.ReadFile(images[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := pngtext.Read(bytes.NewReader(data))
	if err != nil || len(entries) != 1 {
		t.Fatalf("parameters chunk: %v, %v", entries, err)
	}
	if !strings.Contains(entries[0].Text, "Sampler: flow-sde, Eta: 0.7,") {
		t.Errorf("parameters %q do not record flow-sde's default noise level 0.7", entries[0].Text)
	}
}
