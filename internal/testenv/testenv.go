// Package testenv finds the data fksteer's tests need from outside the repository: the real
// models and tokenizers in ../shared. Tests skip with a message naming the fix when a file is
// absent, and never copy it into the repository. It imports no fksteer package, so tests that
// only read files (the tokenizers') need neither cgo nor ONNX Runtime; readying the runtime is
// models/modeltest's job.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// SharedDir is the shared data folder: $FKSTEER_SHARED, else ../shared beside the module root.
func SharedDir() string {
	if d := os.Getenv("FKSTEER_SHARED"); d != "" {
		return d
	}
	if root := ModuleRoot(); root != "" {
		return filepath.Join(filepath.Dir(root), "shared")
	}
	return ""
}

// ModuleRoot is the folder holding go.mod, found upward from the working folder ("" if none).
func ModuleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// SharedFile returns the path of a file under the shared folder (for example
// "models/mnist-dit-rf/model.onnx"), or skips the test with a clear message if it is absent.
func SharedFile(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(SharedDir(), rel)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared test data %s is absent (set FKSTEER_SHARED to the folder holding models/ and tokenizers/)", p)
	}
	return p
}
