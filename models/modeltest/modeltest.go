// Package modeltest readies ONNX Runtime for tests, in the manner of net/http/httptest: Runtime
// initialises it for the test binary and WebGPU checks the WebGPU execution provider, each
// skipping the test with a message naming the fix when the piece is absent. Finding the shared
// models on disk is internal/testenv's job, which needs no runtime.
package modeltest

import (
	"errors"
	"io"
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

// Main runs a package's tests (call it from TestMain: os.Exit(modeltest.Main(m))) with a cache
// of their own, removed afterwards, so that the built-in model is built once per package and no
// test touches the user's cache; the ONNX Runtime library is still found where it is installed.
func Main(m *testing.M) int {
	// The library lives in the user's cache; keep finding it there.
	if lib, err := models.FindLibrary(""); err == nil {
		os.Setenv(models.LibraryEnv, lib)
	}
	cache, err := os.MkdirTemp("", "fksteer-test-cache-")
	if err != nil {
		panic(err)
	}
	os.Setenv("FKSTEER_CACHE", cache)
	defer os.RemoveAll(cache)
	return m.Run()
}

// Open readies ONNX Runtime, then returns what open opens and closes it when the test ends. The
// test skips as [Runtime] says, and fails if open does; open may itself skip (for example
// through testenv.SharedFile) since it runs on the test's goroutine.
func Open[T io.Closer](tb testing.TB, open func() (T, error)) T {
	tb.Helper()
	Runtime(tb)
	v, err := open()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
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
