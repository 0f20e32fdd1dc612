// Package testenv finds what fksteer's tests need from outside the repository: the ONNX Runtime
// library and the real models in ../shared. Tests skip with a message naming the fix when a
// piece is absent, and never copy it into the repository.
package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fksteer/fksteer/models"
)

// Runtime initialises ONNX Runtime for the test binary, or skips the test if it is not installed.
func Runtime(tb testing.TB) {
	tb.Helper()
	if err := models.Init(""); err != nil {
		if errors.Is(err, models.ErrNoRuntime) {
			tb.Skipf("ONNX Runtime not installed: run `make ort` (scripts/install-ort.sh) or set %s", models.LibraryEnv)
		}
		tb.Fatal(err)
	}
}

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

var webgpu struct {
	once   sync.Once
	status models.ProviderStatus
}

// WebGPU skips the test unless the WebGPU execution provider runs here (a Vulkan driver with an
// adapter Dawn accepts: lavapipe will do). Under CI (CI=true) a missing adapter fails the test
// instead, since CI installs lavapipe precisely so that these tests run.
func WebGPU(tb testing.TB) {
	tb.Helper()
	Runtime(tb)
	webgpu.once.Do(func() { webgpu.status = models.CheckProvider(models.WebGPU) })
	st := webgpu.status
	if st.Runs {
		return
	}
	msg := "WebGPU does not run here (install a Vulkan driver: scripts/install-vulkan.sh installs Mesa's lavapipe): " + st.Detail
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}
