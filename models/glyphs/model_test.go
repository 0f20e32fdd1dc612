package glyphs_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fksteer/fksteer/models/glyphs"
)

func TestEnsureModel(t *testing.T) {
	d := load(t)
	want, err := glyphs.BuildDenoiser(d)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()

	// Concurrent first use: every caller gets the same complete file.
	const callers = 8
	paths := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { paths[i], errs[i] = glyphs.EnsureModel(cache) })
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if paths[i] != paths[0] {
			t.Fatalf("callers got different paths: %s, %s", paths[0], paths[i])
		}
	}
	path := paths[0]
	rel, err := filepath.Rel(cache, path)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if _, err := hex.DecodeString(parts[min(1, len(parts)-1)]); len(parts) != 3 || parts[0] != "glyphs" ||
		len(parts[1]) != 16 || err != nil || parts[2] != "model.onnx" {
		t.Errorf("model at %s, want glyphs/<16 hex digits>/model.onnx", rel)
	}
	checkFile(t, path, want)
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("model folder holds %d entries, want only model.onnx (temporary files left?)", len(entries))
	}

	// Later use reuses the file untouched.
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := glyphs.EnsureModel(cache)
	if err != nil || again != path {
		t.Fatalf("second EnsureModel = %s, %v; want %s", again, err, path)
	}
	if after, err := os.Stat(path); err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Error("second EnsureModel rewrote the model")
	}

	// A damaged file is replaced.
	if err := os.WriteFile(path, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := glyphs.EnsureModel(cache); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, want)
}

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s holds %d bytes that are not the model (%d bytes)", path, len(got), len(want))
	}
}

func TestEnsureModelReportsUnwritableCache(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := glyphs.EnsureModel(file); err == nil { // a file where the cache folder should be
		t.Error("EnsureModel under a regular file succeeded")
	}
}
