package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pipelines/inspect"
)

func TestModelsList(t *testing.T) {
	code, stdout, stderr := cli(t, "", "models", "list", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rows []generation.Listing
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, r := range rows {
		kinds[r.Name] = r.Kind
		if r.Name == "mnist-dit-rf" && r.Checksums != "sha256 pinned" {
			t.Errorf("mnist-dit-rf checksums: %q", r.Checksums)
		}
	}
	for name, kind := range map[string]string{"glyphs": "built-in", "sd-turbo": "catalog", "stable-diffusion-v1-5": "catalog", "ppocr-en": "catalog", "dinov2-small": "catalog"} {
		if kinds[name] != kind {
			t.Errorf("%s is listed as %q, want %q", name, kinds[name], kind)
		}
	}
	code, stdout, _ = cli(t, "", "models", "list")
	if code != 0 || !strings.Contains(stdout, "NAME") || !strings.Contains(stdout, "sd-turbo") {
		t.Errorf("table:\n%s", stdout)
	}
}

func TestModelsInspect(t *testing.T) {
	modeltest.Runtime(t)
	code, stdout, stderr := cli(t, "", "models", "inspect", "glyphs", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r inspect.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.Format != "built-in" || len(r.Components) != 1 || r.Components[0].Role != inspect.Denoiser || len(r.Components[0].Inputs) != 3 {
		t.Errorf("report %+v", r)
	}
	model := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	code, stdout, stderr = cli(t, "", "models", "inspect", model)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"looks like: image classifier or embedding", "input   input   float32  [?, 1, 28, 28]", "output  output  float32  [?, 10]", "--reward classifier:model="} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, stdout)
		}
	}
	code, _, stderr = cli(t, "", "models", "inspect", "nope.onnx")
	wantError(t, code, stderr, exitError, "nope.onnx does not exist")
}

// TestModelsPull pulls a catalog export through a mirror on 127.0.0.1 that serves the shared
// copy of its file, then runs it by name; a mirror serving other bytes is refused and leaves
// nothing in the cache.
func TestModelsPull(t *testing.T) {
	modeltest.Runtime(t)
	data, err := os.ReadFile(testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	serve := func(body []byte) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/raw.githubusercontent.com/COLVERTYETY/SimpleDiTDemo/9f98dfb8c4ba5c261319d93753a72c8435572015/docs/model.onnx" {
				http.NotFound(w, r)
				return
			}
			w.Write(body)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	cache := t.TempDir()
	t.Setenv("FKSTEER_CACHE", cache)
	dir := filepath.Join(cache, "models", "mnist-dit-rf")

	bad := append([]byte{data[0] ^ 1}, data[1:]...)
	code, _, stderr := cli(t, "", "models", "pull", "mnist-dit-rf", "--download-mirror", serve(bad).URL)
	wantError(t, code, stderr, exitError, "checksum mismatch", "c94c03dc6e52")
	if entries, _ := os.ReadDir(dir); len(entries) > 1 || len(entries) == 1 && !strings.HasSuffix(entries[0].Name(), ".lock") {
		t.Errorf("a refused pull left %v in the cache", entries)
	}
	code, _, stderr = cli(t, "", "generate", "--model", "mnist-dit-rf", "--out", t.TempDir())
	wantError(t, code, stderr, exitError, "fksteer models pull mnist-dit-rf")

	code, stdout, stderr := cli(t, "", "models", "pull", "mnist-dit-rf", "--download-mirror", serve(data).URL)
	if code != 0 {
		t.Fatalf("pull: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "(pinned), downloaded") || !strings.Contains(stdout, "pulled mnist-dit-rf") {
		t.Errorf("pull output:\n%s", stdout)
	}
	code, stdout, stderr = cli(t, "", "generate", "--model", "mnist-dit-rf", "--prompt", "7", "--steps", "4", "--out", t.TempDir())
	if code != 0 || !strings.Contains(stdout, ".png") {
		t.Errorf("generate with the pulled model: exit %d: %s", code, stderr)
	}
	code, stdout, _ = cli(t, "", "models", "pull", "mnist-dit-rf", "--download-mirror", serve(bad).URL)
	if code != 0 || !strings.Contains(stdout, "already present") {
		t.Errorf("a second pull downloaded again: exit %d: %s", code, stdout)
	}

	code, _, stderr = cli(t, "", "models", "pull", "sd-trubo")
	wantError(t, code, stderr, exitUsage, `did you mean "sd-turbo"`)
}
