package main

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
)

func TestMain(m *testing.M) {
	// Re-executed as the CLI itself by tests that need a fresh process (no ONNX Runtime loaded).
	if os.Getenv("FKSTEER_TEST_MAIN") == "1" {
		os.Exit(execute(os.Args[1:]))
	}
	// One cache for the whole package, so the glyphs model is built once.
	cache, err := os.MkdirTemp("", "fksteer-cli-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("FKSTEER_CACHE", cache)
	// The runtime library lives in the user's cache; keep finding it there.
	if lib, err := findUserRuntime(); err == nil {
		os.Setenv("FKSTEER_ORT_LIB", lib)
	}
	code := m.Run()
	os.RemoveAll(cache)
	os.Exit(code)
}

func findUserRuntime() (string, error) {
	if p := os.Getenv("FKSTEER_ORT_LIB"); p != "" {
		return p, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(base, "fksteer", "onnxruntime", models.RuntimeVersion, "libonnxruntime.so.1")
	_, err = os.Stat(p)
	return p, err
}

// cli runs the CLI in-process and returns its exit code, stdout and stderr.
func cli(tb testing.TB, dir string, args ...string) (int, string, string) {
	tb.Helper()
	if dir != "" {
		tb.Chdir(dir)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// wantError checks a failed run: the exit code, one "fksteer: " line naming the problem, and no
// trace of a panic.
func wantError(t *testing.T, code int, stderr string, wantCode int, wants ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, wantCode, stderr)
	}
	last := strings.TrimSpace(stderr)
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	if !strings.HasPrefix(last, "fksteer: ") {
		t.Errorf("last stderr line %q is not a fksteer error message", last)
	}
	for _, w := range wants {
		if !strings.Contains(last, w) {
			t.Errorf("error %q does not mention %q", last, w)
		}
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Errorf("stderr shows a panic:\n%s", stderr)
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// mnistManifest writes a copy of the example manifest with model pointed at model and the
// replacements applied.
func mnistManifest(t *testing.T, dir, model string, replace ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "mnist-dit-rf.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "../../shared/models/mnist-dit-rf/model.onnx", model, 1)
	s = strings.NewReplacer(replace...).Replace(s)
	return writeFile(t, filepath.Join(dir, "m.yaml"), s)
}

func TestNoRuntimeLibrary(t *testing.T) {
	for _, env := range [][]string{
		{"FKSTEER_ORT_LIB=/nonexistent/libonnxruntime.so"},
		{"FKSTEER_ORT_LIB=", "FKSTEER_CACHE=" + t.TempDir()},
	} {
		cmd := exec.Command(os.Args[0], "generate", "--out", t.TempDir())
		cmd.Env = append(append(os.Environ(), "FKSTEER_TEST_MAIN=1"), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if err == nil && env[0] == "FKSTEER_ORT_LIB=" {
			t.Log("a system-wide ONNX Runtime was found; the lookup-failure case cannot be shown here")
			continue
		}
		wantError(t, code, stderr.String(), exitError, "ONNX Runtime not found", "FKSTEER_ORT_LIB")
		if env[0] == "FKSTEER_ORT_LIB=" && !strings.Contains(stderr.String(), "make ort") {
			t.Errorf("the message should name the install command: %s", stderr.String())
		}
	}
}

func TestUserErrorsGetOneClearMessage(t *testing.T) {
	modeltest.Runtime(t)
	model := testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	junk := writeFile(t, filepath.Join(dir, "junk.onnx"), "not a model")
	notDir := writeFile(t, filepath.Join(dir, "file"), "x")

	cases := []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"model file missing", []string{"--model", mnistManifest(t, t.TempDir(), filepath.Join(dir, "missing.onnx"))}, exitError, []string{"missing.onnx does not exist"}},
		{"model not ONNX", []string{"--model", mnistManifest(t, t.TempDir(), junk)}, exitError, []string{"not a valid ONNX model"}},
		{"manifest names a missing tensor", []string{"--model", mnistManifest(t, t.TempDir(), model, "sample: zt", "sample: latents")}, exitError, []string{`no input named "latents"`, "zt"}},
		{"unknown manifest key", []string{"--model", mnistManifest(t, t.TempDir(), model, "prediction: flow", "predicton: flow")}, exitUsage, []string{`unknown key "predicton"`, `did you mean "prediction"`}},
		{"manifest missing", []string{"--model", filepath.Join(dir, "nope.yaml")}, exitError, []string{"nope.yaml does not exist"}},
		{"zero steps", []string{"--steps", "0"}, exitUsage, []string{"steps must be positive"}},
		{"negative steps", []string{"--steps", "-3"}, exitUsage, []string{"steps must be positive"}},
		{"output not writable", []string{"--out", filepath.Join(notDir, "sub")}, exitError, []string{"output folder", "cannot be created"}},
		{"unknown flag", []string{"--stpes", "3"}, exitUsage, []string{"unknown flag"}},
		{"unknown sampler", []string{"--sampler", "heun"}, exitUsage, []string{`unknown sampler "heun"`}},
		{"unknown reward", []string{"--method", "bon", "--particles", "2", "--reward", "colour:target=#fff"}, exitUsage, []string{`did you mean "color"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"generate", "--out", out}, c.args...)
			code, _, stderr := cli(t, "", args...)
			wantError(t, code, stderr, c.code, c.wants...)
		})
	}
}

func TestUnknownConfigKey(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fksteer.yaml"), "prompt: hi\nstpes: 3\n")
	code, _, stderr := cli(t, dir, "generate")
	wantError(t, code, stderr, exitUsage, `unknown key "stpes"`, `did you mean "steps"`)
}

func TestGenerateWritesIdenticalPNGsWithParameters(t *testing.T) {
	modeltest.Runtime(t)
	var files [2][]string
	for i := range files {
		out := filepath.Join(t.TempDir(), "out")
		code, stdout, stderr := cli(t, "", "generate", "--prompt", `a blue "Q"`, "--seed", "11", "--num-images", "3", "--batch-size", "2", "--steps", "20", "--out", out)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			files[i] = append(files[i], line)
		}
	}
	if len(files[0]) != 3 || filepath.Base(files[0][0]) != "11.png" || filepath.Base(files[0][2]) != "13.png" {
		t.Fatalf("printed paths %v, want 11.png, 12.png, 13.png", files[0])
	}
	for j := range files[0] {
		a, err := os.ReadFile(files[0][j])
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(files[1][j])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two runs with the same seed wrote different bytes", filepath.Base(files[0][j]))
		}
		entries, err := pngtext.Read(bytes.NewReader(a))
		if err != nil || len(entries) != 1 || entries[0].Key != "parameters" {
			t.Fatalf("text chunks %v, %v", entries, err)
		}
		text := entries[0].Text
		for _, want := range []string{"a blue \"Q\"\n", "Steps: 20", "Sampler: ddim", "Seed: " + strings.TrimSuffix(filepath.Base(files[0][j]), ".png"), "Model: glyphs", "Model hash: ", "Size: 32x32", "Method: base"} {
			if !strings.Contains(text, want) {
				t.Errorf("parameters %q lack %q", text, want)
			}
		}
	}
}

// TestInterruptKeepsFinishedImages sends SIGINT to a generate run once its first batch is
// written: the run must stop with exit code 130, and every image it wrote must be complete.
func TestInterruptKeepsFinishedImages(t *testing.T) {
	modeltest.Runtime(t)
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(os.Args[0], "generate", "--prompt", `"B"`, "--num-images", "400", "--batch-size", "2", "--steps", "30", "--out", out)
	cmd.Env = append(os.Environ(), "FKSTEER_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The first printed path means a batch is on disk; interrupt then.
	first := make([]byte, 1)
	if _, err := stdout.Read(first); err != nil {
		t.Fatalf("no output before exit: %v; stderr: %s", err, stderr.String())
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Fatalf("exit code %d (%v), want %d; stderr: %s", code, err, exitInterrupted, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say it was interrupted: %s", stderr.String())
	}
	files, err := filepath.Glob(filepath.Join(out, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 || len(files) >= 400 {
		t.Fatalf("%d files after the interrupt; want some but not all", len(files))
	}
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), ".") {
			t.Errorf("temporary file %s left behind", f)
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(data)); err != nil {
			t.Errorf("%s does not decode: %v", f, err)
		}
	}
	t.Logf("interrupted after %d of 400 images", len(files))
}
