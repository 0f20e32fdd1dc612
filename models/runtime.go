package models

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/fksteer/fksteer/internal/filehash"
)

// RuntimeVersion is the ONNX Runtime release whose C API github.com/yalue/onnxruntime_go was
// written against; scripts/install-ort.sh installs exactly this build.
const RuntimeVersion = "1.31.1"

// RuntimeSHA256 is the sha256 of the Linux x64 libonnxruntime.so.1 of [RuntimeVersion] that
// scripts/install-ort.sh installs (from npm's onnxruntime-node; a test keeps the two in step).
const RuntimeSHA256 = "f19a4da48c4c65e0cdccff82354482f657fa91a3455b66174195b94ca55b0e6f"

// RuntimeSize is the size in bytes of the library [RuntimeSHA256] names. A library of exactly
// this size is taken for the pinned build and its sha256 checked (see [CheckLibrary]).
const RuntimeSize = 47552704

// LibraryEnv names the environment variable that points at an ONNX Runtime shared library,
// for example a GPU build.
const LibraryEnv = "FKSTEER_ORT_LIB"

// ErrNoRuntime is returned (wrapped) when no ONNX Runtime shared library can be found.
var ErrNoRuntime = errors.New("ONNX Runtime not found")

// ErrBadRuntime is returned (wrapped) when the ONNX Runtime library found is not one that can be
// loaded: not a regular file, not a shared library for this platform, truncated, or a damaged
// copy of the pinned build.
var ErrBadRuntime = errors.New("unusable ONNX Runtime library")

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

// minLibrarySize is the smallest file taken for an ONNX Runtime library. Every release build is
// tens of megabytes and even size-reduced minimal builds are several; far smaller is an error
// page or a stub saved under the library's name.
const minLibrarySize = 1 << 20

// CheckLibrary checks, without loading it, that path can be an ONNX Runtime shared library for
// this platform: a regular file of a plausible size (at least 1 MiB); on ELF systems (Linux and
// the BSDs) an ELF shared object of this machine's class and architecture whose headers and
// loadable segments all lie within the file, which catches a truncated copy; and, where path is
// the cache's pinned location or the file has the pinned build's size ([RuntimeSize]), the pinned
// sha256 ([RuntimeSHA256]). The error wraps [ErrBadRuntime] and names the two fixes: `make ort`,
// or pointing --ort-lib or $FKSTEER_ORT_LIB at another build.
func CheckLibrary(path string) error {
	if err := libraryProblem(path); err != nil {
		return fmt.Errorf("%w %s: %w; run `make ort` to reinstall ONNX Runtime %s into the cache, or point --ort-lib or %s at a working libonnxruntime.so",
			ErrBadRuntime, path, err, RuntimeVersion, LibraryEnv)
	}
	return nil
}

// libraryProblem says what is wrong with the library at path, or nil.
func libraryProblem(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("it is not a regular file (%s)", st.Mode().Type())
	}
	size := st.Size()
	if size < minLibrarySize {
		return fmt.Errorf("it is %d bytes, too small to be ONNX Runtime (an interrupted copy, or an error page saved as the library?)", size)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	switch goruntime.GOOS {
	case "darwin", "ios", "windows":
		// Mach-O and PE libraries: the checks above and the pinned sha256 (a Linux build)
		// are what applies.
	default:
		if err := checkELF(f, size); err != nil {
			return err
		}
	}
	if size == RuntimeSize || isPinnedLocation(path) {
		sum, _, err := filehash.SHA256(path)
		if err != nil {
			return err
		}
		if sum != RuntimeSHA256 {
			return fmt.Errorf("its sha256 is %s, not the pinned ONNX Runtime %s build's %s (a damaged or partial copy?)", sum, RuntimeVersion, RuntimeSHA256)
		}
	}
	return nil
}

// elfMachines maps GOARCH to the ELF machine its libraries are built for.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "loong64": elf.EM_LOONGARCH,
}

// checkELF checks that f (size bytes) is an ELF shared object for this process whose header
// tables and loadable segments lie within the file.
func checkELF(f *os.File, size int64) error {
	var ident [elf.EI_NIDENT]byte
	if _, err := f.ReadAt(ident[:], 0); err != nil || string(ident[:4]) != elf.ELFMAG {
		return errors.New("it is not an ELF shared library (an error page saved as the library, or a library for another system?)")
	}
	var order binary.ByteOrder = binary.LittleEndian
	if elf.Data(ident[elf.EI_DATA]) == elf.ELFDATA2MSB {
		order = binary.BigEndian
	}
	r := io.NewSectionReader(f, 0, size)
	var typ elf.Type
	var machine elf.Machine
	var tablesEnd uint64 // where the program and section header tables end
	switch class := elf.Class(ident[elf.EI_CLASS]); class {
	case elf.ELFCLASS64:
		var h elf.Header64
		if err := binary.Read(r, order, &h); err != nil {
			return fmt.Errorf("its ELF header is cut short (%d bytes)", size)
		}
		typ, machine = elf.Type(h.Type), elf.Machine(h.Machine)
		tablesEnd = max(h.Phoff+uint64(h.Phnum)*uint64(h.Phentsize), h.Shoff+uint64(h.Shnum)*uint64(h.Shentsize))
	case elf.ELFCLASS32:
		var h elf.Header32
		if err := binary.Read(r, order, &h); err != nil {
			return fmt.Errorf("its ELF header is cut short (%d bytes)", size)
		}
		typ, machine = elf.Type(h.Type), elf.Machine(h.Machine)
		tablesEnd = max(uint64(h.Phoff)+uint64(h.Phnum)*uint64(h.Phentsize), uint64(h.Shoff)+uint64(h.Shnum)*uint64(h.Shentsize))
	default:
		return fmt.Errorf("its ELF header is corrupt (class %d)", ident[elf.EI_CLASS])
	}
	want := elf.ELFCLASS64
	if strconv.IntSize == 32 {
		want = elf.ELFCLASS32
	}
	if c := elf.Class(ident[elf.EI_CLASS]); c != want {
		return fmt.Errorf("it is a %s library and this fksteer is %d-bit", c, strconv.IntSize)
	}
	if m, ok := elfMachines[goruntime.GOARCH]; ok && machine != m {
		return fmt.Errorf("it is built for %s, and this machine is %s", machine, goruntime.GOARCH)
	}
	if typ != elf.ET_DYN {
		return fmt.Errorf("it is not a shared library (ELF type %s)", typ)
	}
	truncated := func(end uint64) error {
		return fmt.Errorf("it is truncated: %d bytes, but its ELF headers place data up to byte %d (an interrupted copy or download?)", size, end)
	}
	if tablesEnd > uint64(size) {
		return truncated(tablesEnd)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("its ELF headers are corrupt: %w", err)
	}
	for _, p := range ef.Progs {
		if end := p.Off + p.Filesz; p.Type == elf.PT_LOAD && end > uint64(size) {
			return truncated(end)
		}
	}
	return nil
}

// isPinnedLocation reports whether path is the file scripts/install-ort.sh installs.
func isPinnedLocation(path string) bool {
	cache, err := CacheDir()
	if err != nil {
		return false
	}
	a, err1 := os.Stat(path)
	b, err2 := os.Stat(filepath.Join(cache, "onnxruntime", RuntimeVersion, "libonnxruntime.so.1"))
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

var runtime struct {
	sync.Mutex
	path string
}

// Init loads the ONNX Runtime library found by [FindLibrary](libPath), once [CheckLibrary] has
// passed it, and creates the process's one runtime environment. Later calls are no-ops that return nil, or an error if they name a
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
	// The loader trusts the file: a truncated one is mapped past its end and touching that is
	// SIGBUS, a crash no error handling can catch. So the file is checked first.
	if err := CheckLibrary(path); err != nil {
		return err
	}
	ort.SetSharedLibraryPath(path)
	// ONNX Runtime's own logger writes every error it returns to stderr first, as a coloured
	// line before fksteer's message; fksteer reports those errors itself, naming the fix, so
	// only fatal messages (which no returned error carries) are left to the logger.
	if err := ort.InitializeEnvironment(ort.WithLogLevelFatal()); err != nil {
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
