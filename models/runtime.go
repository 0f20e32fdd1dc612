package models

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// RuntimeVersion is the ONNX Runtime release whose C API github.com/yalue/onnxruntime_go was
// written against; scripts/install-ort.sh installs exactly this build.
const RuntimeVersion = "1.31.1"

// RuntimeSHA256 is the sha256 of the Linux x64 libonnxruntime.so.1 of [RuntimeVersion] that
// scripts/install-ort.sh installs (from npm's onnxruntime-node; a test keeps the two in step).
const RuntimeSHA256 = "f19a4da48c4c65e0cdccff82354482f657fa91a3455b66174195b94ca55b0e6f"

// LibraryEnv names the environment variable that points at an ONNX Runtime shared library,
// for example a GPU build.
const LibraryEnv = "FKSTEER_ORT_LIB"

// ErrNoRuntime is returned (wrapped) when no ONNX Runtime shared library can be found.
var ErrNoRuntime = errors.New("ONNX Runtime not found")

// CacheDir is where fksteer keeps what it downloads or generates: $FKSTEER_CACHE, else
// $XDG_CACHE_HOME/fksteer, else ~/.cache/fksteer (os.UserCacheDir's rule).
func CacheDir() (string, error) {
	if d := os.Getenv("FKSTEER_CACHE"); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache folder (set FKSTEER_CACHE): %w", err)
	}
	return filepath.Join(base, "fksteer"), nil
}

// FindLibrary returns the ONNX Runtime shared library to load. The lookup order is: explicit
// (the --ort-lib flag or ort_lib config key), $FKSTEER_ORT_LIB, the copy scripts/install-ort.sh
// puts in the cache, then the system's usual library folders. An explicit or environment path
// that does not exist is an error rather than a reason to look further, so a typo is not
// silently replaced by another build.
func FindLibrary(explicit string) (string, error) {
	for _, c := range []struct{ path, source string }{
		{explicit, "--ort-lib"},
		{os.Getenv(LibraryEnv), "$" + LibraryEnv},
	} {
		if c.path == "" {
			continue
		}
		if _, err := os.Stat(c.path); err != nil {
			return "", fmt.Errorf("%w: %s names %s, which does not exist (run `make ort` to install ONNX Runtime %s into the cache, or point --ort-lib or %s at a libonnxruntime.so)", ErrNoRuntime, c.source, c.path, RuntimeVersion, LibraryEnv)
		}
		return c.path, nil
	}
	var tried []string
	if cache, err := CacheDir(); err == nil {
		tried = append(tried, filepath.Join(cache, "onnxruntime", RuntimeVersion, "libonnxruntime.so.1"))
	}
	for _, dir := range []string{"/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/opt/onnxruntime/lib"} {
		tried = append(tried, filepath.Join(dir, "libonnxruntime.so"), filepath.Join(dir, "libonnxruntime.so.1"))
	}
	for _, p := range tried {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (looked in %s): run `make ort` (scripts/install-ort.sh) to install ONNX Runtime %s, or set %s to a libonnxruntime.so of version %s (for example a GPU build)",
		ErrNoRuntime, strings.Join(tried[:min(len(tried), 3)], ", ")+", ...", RuntimeVersion, LibraryEnv, RuntimeVersion)
}

var runtime struct {
	sync.Mutex
	path string
}

// Init loads the ONNX Runtime library found by [FindLibrary](libPath) and creates the process's
// one runtime environment. Later calls are no-ops that return nil, or an error if they name a
// different library than the one already loaded (a process cannot hold two). A failed Init leaves
// nothing loaded, so it can be retried with another path.
func Init(libPath string) error {
	runtime.Lock()
	defer runtime.Unlock()
	if runtime.path != "" {
		if libPath != "" && libPath != runtime.path {
			return fmt.Errorf("ONNX Runtime is already loaded from %s; cannot also load %s in one process", runtime.path, libPath)
		}
		return nil
	}
	path, err := FindLibrary(libPath)
	if err != nil {
		return err
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("load ONNX Runtime from %s (fksteer needs version %s; run `make ort` or set %s): %w", path, RuntimeVersion, LibraryEnv, err)
	}
	runtime.path = path
	return nil
}

// LibraryPath is the path of the loaded ONNX Runtime library, or "" before [Init].
func LibraryPath() string {
	runtime.Lock()
	defer runtime.Unlock()
	return runtime.path
}

// LoadedVersion is the version the loaded ONNX Runtime library reports, or "" before [Init].
func LoadedVersion() string {
	if LibraryPath() == "" {
		return ""
	}
	return ort.GetVersion()
}

// Shutdown destroys the runtime environment. Sessions must be closed first. It exists for
// programs that want a clean exit; the CLI relies on process exit instead.
func Shutdown() error {
	runtime.Lock()
	defer runtime.Unlock()
	if runtime.path == "" {
		return nil
	}
	runtime.path = ""
	return ort.DestroyEnvironment()
}
