package fetch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/filehash"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/pipelines"
)

func TestCatalogIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range Catalog() {
		if seen[e.Name] || e.Name == "" || e.Description == "" || e.License == "" || e.Source == "" || len(e.Files) == 0 {
			t.Errorf("export %+v is incomplete or repeated", e.Name)
		}
		seen[e.Name] = true
		paths := map[string]bool{}
		for _, f := range e.Files {
			if !strings.HasPrefix(f.URL, "https://") || paths[f.Path] || filepath.IsAbs(f.Path) || strings.Contains(f.Path, "..") {
				t.Errorf("%s: bad file %+v", e.Name, f)
			}
			paths[f.Path] = true
			if f.SHA256 != "" && (!isSHA256(f.SHA256) || f.Size <= 0) {
				t.Errorf("%s: %s has a pinned sha256 but a bad digest or size", e.Name, f.Path)
			}
		}
		if e.Manifest != "" {
			if _, err := pipelines.ParseManifest([]byte(e.Manifest)); err != nil {
				t.Errorf("%s: its manifest does not load: %v", e.Name, err)
			}
		}
	}
	for _, want := range []string{"sd-turbo", "stable-diffusion-v1-5", "ppocr-en", "dinov2-small", "mnist-dit-rf"} {
		if !seen[want] {
			t.Errorf("the catalog lacks %s", want)
		}
	}
	if _, err := Lookup("sd-trubo"); err == nil || !strings.Contains(err.Error(), `did you mean "sd-turbo"`) {
		t.Errorf("Lookup of a typo: %v", err)
	}
}

// TestPinnedChecksumsMatchSharedCopies checks the pinned digests against the copies of the same
// files in ../shared/models, which were fetched from the same commits.
func TestPinnedChecksumsMatchSharedCopies(t *testing.T) {
	shared := map[string]string{
		"mnist-dit-rf/model.onnx":                       "mnist-dit-rf/model.onnx",
		"mnist-cnn-classifier/mnist-8.onnx":             "mnist-cnn-classifier/mnist-8.onnx",
		"ppocr-en/en_PP-OCRv3_det_infer.onnx":           "ppocr-en/en_PP-OCRv3_det_infer.onnx",
		"ppocr-en/en_number_mobile_v2.0_rec_infer.onnx": "ppocr-en/en_number_mobile_v2.0_rec_infer.onnx",
		"ppocr-en/en_dict.txt":                          "ppocr-en/en_dict.txt",
		"laion-aesthetic-vitb32/laion_aesthetic.onnx":   "laion-aesthetic-vitb32-linear/laion_aesthetic.onnx",
	}
	checked := 0
	for _, e := range Catalog() {
		for _, f := range e.Files {
			if f.SHA256 == "" {
				continue
			}
			rel, ok := shared[e.Name+"/"+f.Path]
			if !ok {
				t.Errorf("%s/%s is pinned but has no shared copy to check it against", e.Name, f.Path)
				continue
			}
			p := filepath.Join(testenv.SharedDir(), "models", rel)
			sum, n, err := filehash.SHA256(p)
			if err != nil {
				t.Logf("shared copy %s absent; not checked", p)
				continue
			}
			if sum != f.SHA256 || n != f.Size {
				t.Errorf("%s/%s: pinned %s (%d bytes), shared copy %s (%d bytes)", e.Name, f.Path, f.SHA256, f.Size, sum, n)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Skip("no shared model copies here (set FKSTEER_SHARED)")
	}
}

func TestMirrored(t *testing.T) {
	got, err := Mirrored("https://huggingface.co/a/b/resolve/main/x.onnx?download=1", "http://127.0.0.1:8080/cache/")
	if err != nil || got != "http://127.0.0.1:8080/cache/huggingface.co/a/b/resolve/main/x.onnx?download=1" {
		t.Errorf("Mirrored = %q, %v", got, err)
	}
	if got, _ := Mirrored("https://x/y", ""); got != "https://x/y" {
		t.Errorf("no mirror: %q", got)
	}
	if _, err := Mirrored("https://x/y", "ftp://m"); err == nil {
		t.Error("a non-HTTP mirror was accepted")
	}
}

func TestPullThroughMirror(t *testing.T) {
	srv := newServer(t)
	cache := t.TempDir()
	// A hub-like export: one LFS file whose sha256 the hub states, one small unverified file.
	big, small := payload(70_000, 9), []byte(`{"_class_name": "x"}`)
	bigSum := srv.put("/huggingface.co/org/m/resolve/r1/unet/model.onnx", big)
	srv.put("/huggingface.co/org/m/resolve/r1/model_index.json", small)
	srv.linked["/huggingface.co/org/m/resolve/r1/unet/model.onnx"] = bigSum
	e := Export{Name: "tiny", Files: hubFiles("org/m", "r1", "unet/model.onnx", "model_index.json"), Manifest: "name: tiny\n"}
	// Through the server's /resolve prefix, which redirects stating the sha256 as the hub does.
	mirror := srv.URL + "/resolve"
	res, err := Pull(context.Background(), &Client{Backoff: noWait}, e, cache, mirror)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Verified != Server || res[1].Verified != Unverified {
		t.Errorf("verification %s and %s, want server and unverified", res[0].Verified, res[1].Verified)
	}
	if !e.Pulled(cache) {
		t.Error("not reported as pulled")
	}
	if data, err := os.ReadFile(filepath.Join(e.Dir(cache), "manifest.yaml")); err != nil || string(data) != "name: tiny\n" {
		t.Errorf("manifest: %q, %v", data, err)
	}
	n := len(srv.requests())
	res, err = Pull(context.Background(), &Client{}, e, cache, mirror)
	if err != nil || !res[0].Cached || !res[1].Cached || len(srv.requests()) != n {
		t.Errorf("second pull downloaded again: %+v, %v", res, err)
	}
	// A damaged file is fetched again.
	os.WriteFile(filepath.Join(e.Dir(cache), "unet", "model.onnx"), []byte("x"), 0o644)
	res, err = Pull(context.Background(), &Client{}, e, cache, mirror)
	if err != nil || res[0].Cached || res[0].SHA256 != bigSum {
		t.Errorf("damaged file: %+v, %v", res, err)
	}
}

func TestPullPinnedCatalogExport(t *testing.T) {
	model := filepath.Join(testenv.SharedDir(), "models", "mnist-dit-rf", "model.onnx")
	data, err := os.ReadFile(model)
	if err != nil {
		t.Skipf("shared copy %s absent (set FKSTEER_SHARED)", model)
	}
	e, err := Lookup("mnist-dit-rf")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t)
	srv.put("/raw.githubusercontent.com/COLVERTYETY/SimpleDiTDemo/9f98dfb8c4ba5c261319d93753a72c8435572015/docs/model.onnx", data)
	cache := t.TempDir()
	if p, err := ResolveManifest("mnist-dit-rf", cache); err == nil || p != "" || !strings.Contains(err.Error(), "fksteer models pull mnist-dit-rf") {
		t.Errorf("before the pull: %q, %v", p, err)
	}
	res, err := Pull(context.Background(), &Client{}, e, cache, srv.URL)
	if err != nil || res[0].Verified != Pinned {
		t.Fatalf("pull: %+v, %v", res, err)
	}
	p, err := ResolveManifest("mnist-dit-rf", cache)
	if err != nil || p == "" {
		t.Fatalf("after the pull: %q, %v", p, err)
	}
	m, err := pipelines.LoadManifest(p)
	if err != nil || m.ModelPath() != filepath.Join(e.Dir(cache), "model.onnx") {
		t.Errorf("the pulled manifest: %v, %v", m, err)
	}
	if p, err := ResolveManifest("sd-turbo", cache); p != "" || err != nil {
		t.Errorf("an export without a manifest resolved to %q, %v", p, err)
	}

	// The same export served with other bytes is rejected.
	srv.put("/raw.githubusercontent.com/COLVERTYETY/SimpleDiTDemo/9f98dfb8c4ba5c261319d93753a72c8435572015/docs/model.onnx", append([]byte{1}, data[1:]...))
	other := t.TempDir()
	if _, err := Pull(context.Background(), &Client{}, e, other, srv.URL); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("tampered file: %v", err)
	}
	if e.Pulled(other) {
		t.Error("a rejected pull counts as pulled")
	}
}
