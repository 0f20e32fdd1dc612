package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/onnxgraph"
)

// withMemory makes the CLI see avail bytes of available memory for the rest of the test.
func withMemory(t *testing.T, avail uint64) {
	t.Helper()
	old := availableMemory
	availableMemory = func() (uint64, bool) { return avail, true }
	t.Cleanup(func() { availableMemory = old })
}

// cliWithin runs the CLI in-process as cli does, but cancelled after d: a run that would go on
// (the defects these tests pin) ends as an interrupt, exit code 130, which fails any test that
// expects a refusal.
func cliWithin(t *testing.T, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// glyphsRow is the estimated bytes per particle row of the glyphs model (3×32×32 states and
// images, guidance off): 7 states (5 of the sampler, the model's input and output) and 2
// images of 3072 float32 values.
const glyphsRow = (7*3072 + 2*3072) * 4

func TestCheckMemoryMessages(t *testing.T) {
	withMemory(t, 25<<20)
	est := generation.Memory{Rows: 100, Bytes: 100 * glyphsRow} // 10.5 MiB
	if err := checkMemory(est, 2, "--particles"); err != nil {
		t.Errorf("2 workers of 10.5 MiB in 25 MiB refused: %v", err)
	}
	// 4 × 11059200 bytes = 42.2 MiB, shown rounded up, as is each worker's 10.5 MiB; 25 MiB
	// holds 2 of them.
	err := checkMemory(est, 4, "--particles")
	var ue usageError
	if !errors.As(err, &ue) || err.Error() != "4 workers need at least 43 MiB of memory (11 MiB each, 100 particle rows) but 25 MiB is available: lower --workers (to 2 or fewer), or --particles (or --memory-check=false to run anyway)" {
		t.Errorf("4 workers: %v", err)
	}
	err = checkMemory(generation.Memory{Rows: 1000, Bytes: 3 << 30}, 1, "--particles or --batch-size")
	if err == nil || err.Error() != "this run needs at least 3.0 GiB of memory (1000 particle rows) but 25 MiB is available: lower --particles or --batch-size (or --memory-check=false to run anyway)" {
		t.Errorf("one run: %v", err)
	}
	// --memory-check=false runs what the estimate would refuse.
	memoryChecked = false
	t.Cleanup(func() { memoryChecked = true })
	if err := checkMemory(generation.Memory{Rows: 1000, Bytes: 3 << 30}, 1, "x"); err != nil {
		t.Errorf("refused with the memory check off: %v", err)
	}
	memoryChecked = true
	availableMemory = func() (uint64, bool) { return 0, false }
	if err := checkMemory(generation.Memory{Rows: 1, Bytes: 1 << 40}, 1, "x"); err != nil {
		t.Errorf("refused where the available memory is unknown: %v", err)
	}
}

// TestThreadsAboveTheLimit runs the CLI in a child process: before the limit, --threads 100000
// grew by ~50 MB/s inside ONNX Runtime and ignored SIGTERM, so the child is bounded by a deadline
// and killed if it passes it.
func TestThreadsAboveTheLimit(t *testing.T) {
	modeltest.Runtime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "generate", "--threads", "100000", "--steps", "2", "--out", t.TempDir())
	cmd.Env = append(os.Environ(), "FKSTEER_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("--threads 100000 was still running after 30 s:\n%.2000s", stderr.String())
	}
	limit := 4 * runtime.NumCPU()
	wantError(t, cmd.ProcessState.ExitCode(), stderr.String(), exitUsage, "--threads 100000", fmt.Sprintf("limit of %d", limit), "lower --threads")
	if strings.Contains(stderr.String(), "execution provider") {
		t.Error("ONNX Runtime was started before the thread count was checked")
	}
}

func TestStepAndParticleLimits(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	prompts := writeFile(t, filepath.Join(dir, "p.txt"), "a\n")
	items := writeFile(t, filepath.Join(dir, "items.jsonl"), `{"prompt": "a", "overrides": {"particles": 20000}}`+"\n")
	for _, c := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"steps", []string{"generate", "--steps", "20000"}, []string{"--steps 20000 is above the limit of 10000 steps", "lower --steps"}},
		{"steps 1e8", []string{"generate", "--steps", "100000000"}, []string{"--steps 100000000 is above the limit of 10000 steps"}},
		{"particles", []string{"generate", "--particles", "10001"}, []string{"--particles 10001 is above the limit of 10000 per image"}},
		{"particles 1e5", []string{"generate", "--particles", "100000"}, []string{"--particles 100000 is above the limit of 10000 per image"}},
		{"batch", []string{"batch", "--prompts", prompts, "--steps", "20000"}, []string{"--steps 20000 is above the limit"}},
		{"batch item", []string{"batch", "--prompts", items}, []string{"line 1", "--particles 20000 is above the limit"}},
		{"export samples", []string{"export", "--mode", "grpo", "--prompts", prompts, "--samples", "10001", "--steps", "2", "--reward", "color:target=#f00"}, []string{"--samples 10001 is above the limit of 10000"}},
		{"export steps", []string{"export", "--mode", "grpo", "--prompts", prompts, "--steps", "20000", "--reward", "color:target=#f00"}, []string{"--steps 20000 is above the limit"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			code, _, stderr := cliWithin(t, 20*time.Second, append(c.args, "--out", out)...)
			wantError(t, code, stderr, exitUsage, c.wants...)
			if pngs, _ := filepath.Glob(filepath.Join(out, "*.png")); len(pngs) > 0 {
				t.Errorf("a refused run wrote %v", pngs)
			}
		})
	}
}

// TestRunTooLargeForMemory: with 64 MiB available, runs whose estimate is larger are refused
// before any sampling, naming the estimate, the memory and the flags to lower.
func TestRunTooLargeForMemory(t *testing.T) {
	modeltest.Runtime(t)
	withMemory(t, 64<<20)
	dir := t.TempDir()
	prompts := writeFile(t, filepath.Join(dir, "p.txt"), "a\nb\nc\nd\n")
	items := writeFile(t, filepath.Join(dir, "items.jsonl"), `{"prompt": "a"}`+"\n"+`{"prompt": "b", "overrides": {"particles": 1000}}`+"\n")
	// 1000 glyph particles: 1000 × 108 KiB = 105.5 MiB.
	need := sizeString(1000 * glyphsRow)
	for _, c := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"generate", []string{"generate", "--particles", "1000", "--steps", "2"},
			[]string{"this run needs at least " + need + " of memory (1000 particle rows) but 64 MiB is available", "lower --particles or --batch-size"}},
		{"generate chunk", []string{"generate", "--particles", "125", "--num-images", "8", "--steps", "2"},
			[]string{"needs at least " + need, "(1000 particle rows)"}},
		{"batch", []string{"batch", "--prompts", prompts, "--particles", "1000", "--steps", "2"},
			[]string{"needs at least " + need, "lower --particles or --num-images"}},
		// 100 particles need 10.5 MiB per worker: 64 MiB holds 6 workers, not 8.
		{"batch workers", []string{"batch", "--prompts", prompts, "--particles", "100", "--steps", "2", "--workers", "8"},
			[]string{"8 workers need at least", "lower --workers (to 6 or fewer)"}},
		{"batch item", []string{"batch", "--prompts", items, "--steps", "2"},
			[]string{"line 2", "needs at least " + need, "the item's particles or num-images"}},
		// An export records every step: 8 samples × 2000 steps × 2 states of 3072 values ≈ 376 MiB.
		{"export", []string{"export", "--mode", "grpo", "--prompts", prompts, "--samples", "8", "--steps", "2000", "--reward", "color:target=#f00"},
			[]string{"needs at least", "(8 particle rows)", "lower --samples or --steps"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			code, _, stderr := cliWithin(t, 20*time.Second, append(c.args, "--out", out)...)
			wantError(t, code, stderr, exitUsage, c.wants...)
			if pngs, _ := filepath.Glob(filepath.Join(out, "*.png")); len(pngs) > 0 {
				t.Errorf("a refused run wrote %v", pngs)
			}
		})
	}
	// What fits runs: 100 particles on 4 workers need 42 MiB of the 64.
	out := filepath.Join(t.TempDir(), "ok")
	code, _, stderr := cliWithin(t, 60*time.Second, "batch", "--prompts", prompts, "--particles", "100", "--steps", "2", "--workers", "4", "--out", out)
	if code != 0 {
		t.Fatalf("a batch that fits: exit %d\n%s", code, stderr)
	}
}

// hogManifest writes a manifest denoiser whose model asks ONNX Runtime for a 1 TiB tensor per
// row (an Expand of the 1×4×4 sample to 2^34×4×4), so that its allocation fails for real.
func hogManifest(t *testing.T, dir string) string {
	t.Helper()
	g := onnxgraph.New("hog", 17)
	x := g.Input("zt", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(1), onnxgraph.Fixed(4), onnxgraph.Fixed(4))
	g.Input("t", onnxgraph.Float32, onnxgraph.Sym("batch"))
	big := g.Op("Expand", []string{x, g.Int64s(1, 1<<34, 4, 4)})
	g.Node("ReduceMean", []string{big}, []string{"output"}, onnxgraph.AttrInts("axes", 1), onnxgraph.AttrInt("keepdims", 1))
	g.Output("output", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(1), onnxgraph.Fixed(4), onnxgraph.Fixed(4))
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "hog.onnx"), string(data))
	return writeFile(t, filepath.Join(dir, "hog.yaml"), `name: hog
model: hog.onnx
inputs: {sample: zt, time: t}
output: output
prediction: flow
sample: {shape: [1, 4, 4]}
time: {kind: continuous}
conditioning: {kind: none}
defaults: {steps: 2, sampler: euler}
`)
}

// TestAllocationFailureIsOneClearMessage: ONNX Runtime's own failure to allocate, reached with a
// model whose tensor cannot fit, becomes one message naming the flags to lower, exit code 2;
// a batch stops at the first such item instead of failing every item the same way.
func TestAllocationFailureIsOneClearMessage(t *testing.T) {
	modeltest.Runtime(t)
	if b, _ := os.ReadFile("/proc/sys/vm/overcommit_memory"); strings.TrimSpace(string(b)) == "1" {
		t.Skip("with vm.overcommit_memory=1 a 1 TiB allocation succeeds and the kernel kills the process instead")
	}
	dir := t.TempDir()
	model := hogManifest(t, dir)
	code, _, stderr := cliWithin(t, 60*time.Second, "generate", "--model", model, "--out", filepath.Join(dir, "g"))
	wantError(t, code, stderr, exitUsage, "the model ran out of memory: ONNX Runtime could not allocate 1024.0 GiB for one tensor", "lower --particles or --batch-size")
	if strings.Contains(stderr, "BFCArena") || strings.Contains(stderr, "onnxruntime_src") {
		t.Errorf("ONNX Runtime's raw message reached the user:\n%s", stderr)
	}

	items := writeFile(t, filepath.Join(dir, "p.txt"), "a\nb\nc\nd\ne\nf\n")
	code, _, stderr = cliWithin(t, 60*time.Second, "batch", "--model", model, "--prompts", items, "--workers", "1", "--out", filepath.Join(dir, "b"))
	wantError(t, code, stderr, exitUsage, "ran out of memory", "lower --particles, --num-images or --workers")
	if n := strings.Count(stderr, "ran out of memory"); n > 2 {
		t.Errorf("the batch went on after running out of memory (%d reports):\n%s", n, stderr)
	}

	for _, c := range []struct{ in, want string }{
		{"run model m.onnx: std::bad_alloc", "could not allocate the memory it needed"},
		{"step 1/2: Failed to allocate memory for requested buffer of size 3221225472", "could not allocate 3.0 GiB for one tensor"},
	} {
		err := allocFailure(errors.New(c.in), "--particles")
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) || !strings.HasSuffix(err.Error(), "lower --particles") {
			t.Errorf("allocFailure(%q) = %v", c.in, err)
		}
	}
	other := errors.New("model returned NaN")
	if err := allocFailure(other, "x"); err != other {
		t.Errorf("allocFailure changed an unrelated error: %v", err)
	}
	if allocFailure(nil, "x") != nil {
		t.Error("allocFailure(nil) is not nil")
	}
}

// TestPullFromASilentHost: a mirror that accepts the request and never answers ends the pull
// after --download-timeout, with a message naming the host and the flag, and leaves nothing
// behind (no lock file).
func TestPullFromASilentHost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(srv.Close)
	old := pullAttempts
	pullAttempts = 1
	t.Cleanup(func() { pullAttempts = old })
	cache := t.TempDir()
	t.Setenv("FKSTEER_CACHE", cache)

	start := time.Now()
	code, _, stderr := cliWithin(t, 20*time.Second, "models", "pull", "mnist-dit-rf", "--download-mirror", srv.URL, "--download-timeout", "1")
	host := strings.TrimPrefix(srv.URL, "http://")
	wantError(t, code, stderr, exitError, host+" accepted the request but sent no response within 1s", "raise --download-timeout (now 1s)")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the pull took %v to give up on a 1 s timeout", d)
	}
	var left []string
	filepath.WalkDir(filepath.Join(cache, "models"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, path)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("a pull that received nothing left %v", left)
	}

	code, _, stderr = cliWithin(t, 20*time.Second, "models", "pull", "mnist-dit-rf", "--download-timeout", "0")
	wantError(t, code, stderr, exitUsage, "download-timeout must be a positive number of seconds")
}

// TestPinnedLimitsMatchModels keeps the CLI's thread message in step with the library's limit.
func TestPinnedLimitsMatchModels(t *testing.T) {
	if err := checkThreads(models.ThreadLimit()); err != nil {
		t.Errorf("the limit itself is refused: %v", err)
	}
	if err := checkThreads(models.ThreadLimit() + 1); err == nil {
		t.Error("one thread above the limit is accepted")
	}
}
