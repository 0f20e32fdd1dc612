package glyphs_test

// The ONNX Runtime bootstrap for this package's tests, kept in this one file on purpose: the
// models package will own finding the library and will replace it.

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// ortVersion is the ONNX Runtime release scripts/install-ort.sh installs.
const ortVersion = "1.24.1"

// ortSkip is why tests needing ONNX Runtime skip ("" when it is ready); ortErr is set when the
// library was found but would not start, which fails those tests instead.
var (
	ortSkip string
	ortErr  error
)

// ortLibPath is $FKSTEER_ORT_LIB, else the library under fksteer's cache
// (${FKSTEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fksteer}, as in scripts/install-ort.sh).
func ortLibPath() string {
	if p := os.Getenv("FKSTEER_ORT_LIB"); p != "" {
		return p
	}
	cache := os.Getenv("FKSTEER_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "fksteer")
	}
	return filepath.Join(cache, "onnxruntime", ortVersion, "libonnxruntime.so.1")
}

func TestMain(m *testing.M) {
	lib := ortLibPath()
	if _, err := os.Stat(lib); err != nil {
		ortSkip = fmt.Sprintf("ONNX Runtime not installed (%s): run scripts/install-ort.sh or set FKSTEER_ORT_LIB", lib)
	} else {
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(); err != nil {
			ortErr = fmt.Errorf("start ONNX Runtime from %s: %w", lib, err)
		}
	}
	code := m.Run()
	if ort.IsInitialized() {
		if err := ort.DestroyEnvironment(); err != nil {
			fmt.Fprintln(os.Stderr, "destroy ONNX Runtime environment:", err)
		}
	}
	os.Exit(code)
}

// requireORT skips t when ONNX Runtime is not installed and fails it when it would not start.
func requireORT(t testing.TB) {
	t.Helper()
	if ortSkip != "" {
		t.Skip(ortSkip)
	}
	if ortErr != nil {
		t.Fatal(ortErr)
	}
}
