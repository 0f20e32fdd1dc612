package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateFromSpec runs `generate --spec` with a YAML spec, a JSON spec and a PNG that
// generate wrote: the spec files give the same images as the same flags, the PNG regenerates
// itself byte for byte, and flags beside --spec override its values.
func TestGenerateFromSpec(t *testing.T) {
	dir := t.TempDir()
	other := mnistManifest(t, dir, mnistModelPath(t))
	flags := []string{"--prompt", `a red "A"`, "--steps", "6", "--method", "fk", "--particles", "3",
		"--reward", "color:target=#cc2222", "--lambda", "4", "--seed", "21", "--num-images", "2"}
	code, _, stderr := cli(t, dir, append([]string{"generate", "--out", "flags"}, flags...)...)
	if code != 0 {
		t.Fatalf("generate: exit %d\n%s", code, stderr)
	}
	yamlSpec := writeFile(t, filepath.Join(dir, "run.yaml"), `prompt: 'a red "A"'
steps: 6
method: fk
particles: 3
reward: color:target=#cc2222
lambda: 4
seed: 21
num-images: 2
`)
	jsonSpec := writeFile(t, filepath.Join(dir, "run.json"), `{"prompt": "a red \"A\"", "steps": 6, "method": "fk", "particles": 3,
 "reward": "color:target=#cc2222", "lambda": 4, "seed": 21, "num-images": 2}`)
	for name, spec := range map[string]string{"yaml": yamlSpec, "json": jsonSpec} {
		code, _, stderr := cli(t, dir, "generate", "--spec", spec, "--out", name)
		if code != 0 {
			t.Fatalf("generate --spec %s: exit %d\n%s", name, code, stderr)
		}
		for _, f := range []string{"21.png", "22.png"} {
			if !sameBytes(t, filepath.Join(dir, "flags", f), filepath.Join(dir, name, f)) {
				t.Errorf("%s from the %s spec differs from the same settings given as flags", f, name)
			}
		}
	}
	// A PNG regenerates itself, alone (one image, its own seed).
	code, stdout, stderr := cli(t, dir, "generate", "--spec", filepath.Join(dir, "flags", "22.png"), "--out", "again")
	if code != 0 {
		t.Fatalf("generate --spec PNG: exit %d\n%s", code, stderr)
	}
	if got := strings.TrimSpace(stdout); got != filepath.Join("again", "22.png") {
		t.Errorf("regenerating 22.png wrote %q, want again/22.png alone", got)
	}
	if !sameBytes(t, filepath.Join(dir, "flags", "22.png"), filepath.Join(dir, "again", "22.png")) {
		t.Error("22.png regenerated from its own parameters chunk differs")
	}
	// Flags override the spec's values.
	code, _, stderr = cli(t, dir, "generate", "--spec", yamlSpec, "--steps", "5", "--num-images", "1", "--out", "override")
	if code != 0 {
		t.Fatalf("generate --spec with flags: exit %d\n%s", code, stderr)
	}
	params, err := os.ReadFile(filepath.Join(dir, "override", "21.png"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(params, []byte("Steps: 5,")) || !bytes.Contains(params, []byte("Lambda: 4,")) {
		t.Error("--steps 5 beside --spec did not override the spec's 6, or the spec's lambda 4 was lost")
	}
	// A PNG whose model cannot be found by its recorded name is refused, naming the fix.
	code, _, stderr = cli(t, dir, "generate", "--spec", filepath.Join(dir, "flags", "21.png"), "--model", other, "--out", "other")
	wantError(t, code, stderr, exitUsage, "--model")
	// A spec with a key no setting has is refused with a suggestion.
	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), "stpes: 4\n")
	code, _, stderr = cli(t, dir, "generate", "--spec", bad, "--out", "bad")
	wantError(t, code, stderr, exitUsage, "stpes", "steps")
}

func sameBytes(t *testing.T, a, b string) bool {
	t.Helper()
	return bytes.Equal(mustRead(t, a), mustRead(t, b))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mnistModelPath is the MNIST DiT in ../shared, a model other than the glyphs one.
func mnistModelPath(t *testing.T) string {
	t.Helper()
	model, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "models", "mnist-dit-rf", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(model); err != nil {
		t.Skipf("the MNIST DiT is not in ../shared: %v", err)
	}
	return model
}
