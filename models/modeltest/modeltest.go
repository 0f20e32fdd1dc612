// Package modeltest readies ONNX Runtime for tests, in the manner of net/http/httptest: Runtime
// initialises it for the test binary and WebGPU checks the WebGPU execution provider, each
// skipping the test with a message naming the fix when the piece is absent. Finding the shared
// models on disk is internal/testenv's job, which needs no runtime.
package modeltest

import (
	"errors"
	"os"
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
