package models_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
)

// pinnedLibrary returns the pinned ONNX Runtime build installed in the user's cache, or skips.
func pinnedLibrary(t *testing.T) string {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		t.Skip(err)
	}
	p := filepath.Join(base, "fksteer", "onnxruntime", models.RuntimeVersion, "libonnxruntime.so.1")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("the pinned ONNX Runtime is not installed (run `make ort`): %v", err)
	}
	return p
}

// initInChild runs models.Init in a fresh test process, with env added, so that a library that
// crashes the loader (SIGBUS on a truncated file) cannot take down this test binary. It returns
// the child's output and fails the test if the child died from a signal.
func initInChild(t *testing.T, lib string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBadLibraryChild$", "-test.v")
	cmd.Env = append(os.Environ(), append([]string{"FKSTEER_BAD_LIB_CHILD=1", "FKSTEER_BAD_LIB=" + lib}, env...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("the child died from %v loading %s:\n%.2000s", ws.Signal(), lib, out)
		}
	}
	// Go's runtime turns SIGBUS and SIGSEGV in C code into a crash report and exit status 2.
	if strings.Contains(string(out), "signal arrived") || strings.Contains(string(out), "SIGBUS") {
		t.Fatalf("the child crashed loading %s:\n%.2000s", lib, out)
	}
	if err != nil {
		t.Fatalf("child: %v\n%.2000s", err, out)
	}
	if strings.Contains(string(out), "goroutine ") {
		t.Errorf("the child printed a goroutine dump:\n%.2000s", out)
	}
	return string(out)
}

// TestBadLibraryChild is the child of the tests below: it initialises ONNX Runtime from
// $FKSTEER_BAD_LIB and prints the error.
func TestBadLibraryChild(t *testing.T) {
	if os.Getenv("FKSTEER_BAD_LIB_CHILD") != "1" {
		t.Skip("run by the bad-library tests in a child process")
	}
	err := models.Init(os.Getenv("FKSTEER_BAD_LIB"))
	if err == nil {
		os.Stdout.WriteString("LOADED\n")
		return
	}
	os.Stdout.WriteString("ERROR: " + err.Error() + "\n")
	if errors.Is(err, models.ErrBadRuntime) {
		os.Stdout.WriteString("IS ErrBadRuntime\n")
	}
}

// wantRefused checks the child's report: Init refused the library with one message naming the
// reason and both ways to fix it.
func wantRefused(t *testing.T, out string, reasons ...string) {
	t.Helper()
	if strings.Contains(out, "LOADED") {
		t.Fatalf("the library was loaded:\n%s", out)
	}
	_, msg, _ := strings.Cut(out, "ERROR: ")
	msg, _, _ = strings.Cut(msg, "\n")
	for _, want := range append(reasons, "make ort", models.LibraryEnv, "--ort-lib") {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if !strings.Contains(out, "IS ErrBadRuntime") {
		t.Errorf("the error does not wrap ErrBadRuntime:\n%s", out)
	}
}

// copyPrefix copies the first n bytes of src to dst, or all of it when n < 0.
func copyPrefix(t *testing.T, src, dst string, n int64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if n < 0 {
		_, err = io.Copy(out, in)
	} else {
		_, err = io.CopyN(out, in, n)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTruncatedLibraryIsRefused: the first megabyte of the real library, as an interrupted copy
// leaves it. Loading it maps segments past the end of the file, and touching them is SIGBUS.
func TestTruncatedLibraryIsRefused(t *testing.T) {
	lib := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	copyPrefix(t, pinnedLibrary(t), lib, 1<<20)
	out := initInChild(t, lib)
	wantRefused(t, out, lib, "truncated", "1048576 bytes")
}

// TestNonELFLibraryIsRefused: an HTML error page saved under the library's name, padded to a
// library's size so that the size check alone does not catch it.
func TestNonELFLibraryIsRefused(t *testing.T) {
	lib := filepath.Join(t.TempDir(), "libonnxruntime.so")
	page := append([]byte("<!DOCTYPE html><html><body>404 Not Found</body></html>\n"), bytes.Repeat([]byte(" "), 2<<20)...)
	if err := os.WriteFile(lib, page, 0o644); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, initInChild(t, lib), lib, "not an ELF shared library")

	// And in-process, since nothing is loaded: FindLibrary's choice is checked, not only Init's.
	err := models.CheckLibrary(lib)
	if !errors.Is(err, models.ErrBadRuntime) || !strings.Contains(err.Error(), "not an ELF shared library") {
		t.Errorf("CheckLibrary: %v", err)
	}
	if err := models.CheckLibrary(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("CheckLibrary(folder): %v", err)
	}
	tiny := filepath.Join(t.TempDir(), "libonnxruntime.so")
	os.WriteFile(tiny, []byte("\x7fELF"), 0o644)
	if err := models.CheckLibrary(tiny); err == nil || !strings.Contains(err.Error(), "4 bytes, too small") {
		t.Errorf("CheckLibrary(4 bytes): %v", err)
	}
}

// TestDamagedPinnedBuildIsRefused: a copy of the pinned build with one byte changed loads
// (nothing in its headers is wrong) but is not the build fksteer was tested with. Its size is
// the pinned build's, which is what makes fksteer compare the sha256.
func TestDamagedPinnedBuildIsRefused(t *testing.T) {
	src := pinnedLibrary(t)
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != models.RuntimeSize {
		t.Fatalf("the pinned library in the cache is %d bytes; RuntimeSize says %d", st.Size(), models.RuntimeSize)
	}
	lib := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	copyPrefix(t, src, lib, -1)
	f, err := os.OpenFile(lib, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, st.Size()-1)
	b[0] ^= 0xff
	f.WriteAt(b, st.Size()-1)
	f.Close()
	wantRefused(t, initInChild(t, lib), "sha256", models.RuntimeSHA256[:16])
}

// TestPinnedLocationIsHashed: whatever sits at the cache's pinned path must be the pinned build,
// even a valid library of another size.
func TestPinnedLocationIsHashed(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(cache, "onnxruntime", models.RuntimeVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	other := "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(other); err != nil {
		t.Skipf("no %s to stand in for a library of another build", other)
	}
	copyPrefix(t, other, filepath.Join(dir, "libonnxruntime.so.1"), -1)
	out := initInChild(t, "", "FKSTEER_CACHE="+cache, models.LibraryEnv+"=")
	wantRefused(t, out, "sha256", "pinned")
}

// TestRealLibraryPasses: the installed pinned build passes the check.
func TestRealLibraryPasses(t *testing.T) {
	modeltest.Runtime(t)
	if err := models.CheckLibrary(models.LibraryPath()); err != nil {
		t.Fatal(err)
	}
}

// TestThreadLimit: thread counts above ThreadLimit are refused before any session (and so any
// thread pool) is made, with a message that gives the limit.
func TestThreadLimit(t *testing.T) {
	limit := models.ThreadLimit()
	if limit != 4*goruntime.NumCPU() {
		t.Fatalf("ThreadLimit() = %d, want 4 × %d cores", limit, goruntime.NumCPU())
	}
	for _, ok := range [][2]int{{0, 0}, {1, 1}, {limit, 0}, {0, limit}} {
		var o models.Options
		if err := models.WithThreads(ok[0], ok[1])(&o); err != nil {
			t.Errorf("WithThreads(%d, %d): %v", ok[0], ok[1], err)
		}
	}
	for _, bad := range [][2]int{{limit + 1, 0}, {0, limit + 1}, {100000, 0}} {
		var o models.Options
		err := models.WithThreads(bad[0], bad[1])(&o)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("limit of %d", limit)) {
			t.Errorf("WithThreads(%d, %d): %v, want an error giving the limit %d", bad[0], bad[1], err, limit)
		}
	}
}
