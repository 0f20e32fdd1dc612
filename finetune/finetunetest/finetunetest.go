// Package finetunetest holds what tests of datasets share (finetune's, the CLI's), in the manner
// of net/http/httptest: a byte-for-byte comparison of two dataset folders.
package finetunetest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/fksteer/fksteer/batch"
)

// SameFiles fails the test unless the dataset folders want and got hold the same files with the
// same bytes. The export's job state (batch.State: records, locks, a summary that records times)
// is not part of a dataset and is left out; want must hold at least one file.
func SameFiles(tb testing.TB, want, got string) {
	tb.Helper()
	w, g := read(tb, want), read(tb, got)
	if len(w) == 0 {
		tb.Fatalf("%s holds no files", want)
	}
	for name, data := range w {
		if other, ok := g[name]; !ok {
			tb.Errorf("%s is missing", filepath.Join(got, name))
		} else if !bytes.Equal(data, other) {
			tb.Errorf("%s differs from %s's (%d bytes, want %d)", filepath.Join(got, name), want, len(other), len(data))
		}
	}
	for name := range g {
		if _, ok := w[name]; !ok {
			tb.Errorf("%s is not in %s", filepath.Join(got, name), want)
		}
	}
}

// read returns every file below root but the job state, by path relative to root.
func read(tb testing.TB, root string) map[string][]byte {
	tb.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == batch.State {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[rel], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return files
}
