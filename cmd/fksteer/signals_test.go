package main

import (
	"bufio"
	"bytes"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
)

// stopBound is how soon after SIGINT or SIGTERM a command must have exited: the current model
// call (milliseconds for these models) plus writing what is finished. It is generous because the
// suite runs under the race detector on a loaded 2-core machine; a command that ignores the
// signal runs for minutes, so the bound still tells the two apart.
const stopBound = 5 * time.Second

// TestSignalsStopEveryCommand starts each long command as a child process, waits until its
// output shows it has reached the state under test, signals it, and checks that it exits with
// code 130 within stopBound, saying it was interrupted, with its finished outputs intact.
func TestSignalsStopEveryCommand(t *testing.T) {
	if raceEnabled {
		t.Skip("runs in make test's pass without -race (see raceEnabled)")
	}
	modeltest.Runtime(t)
	dir := t.TempDir()
	prompts := writeFile(t, filepath.Join(dir, "prompts.txt"), strings.Repeat("\"A\"\n\"B\"\n", 200))
	// A server that accepts a download and never answers: the state "waiting on the network".
	requested := make(chan struct{}, 1)
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case requested <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	t.Cleanup(stall.Close)
	// models pull reports its target before the request; the handler tells us the request came.
	mnist := filepath.Join(testenv.ModuleRoot(), "examples", "mnist-dit-rf.yaml")
	classifier := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")

	cases := []struct {
		name string
		args []string
		env  []string
		// ready reports whether a line of the child's stderr or stdout shows the state.
		ready  func(line string) bool
		signal syscall.Signal
		// check inspects the output folder after the stop.
		check func(t *testing.T, out string)
		// graceful commands (serve) exit 0 on a signal: stopping is their normal end.
		graceful bool
	}{
		{name: "generate sampling, SIGTERM",
			args:   []string{"generate", "--prompt", `"B"`, "--num-images", "400", "--batch-size", "2", "--steps", "30", "--provider", "cpu"},
			ready:  func(l string) bool { return strings.HasSuffix(l, ".png") },
			signal: syscall.SIGTERM, check: pngsDecode},
		{name: "generate steering with a model reward, SIGINT",
			args: []string{"generate", "--model", mnist, "--num-images", "64", "--batch-size", "1", "--steps", "50", "--sampler", "ddim", "--eta", "1",
				"--method", "fk", "--particles", "4", "--reward", "classifier:model=" + classifier + ",target=3,crop=28", "--provider", "cpu"},
			ready:  func(l string) bool { return strings.HasSuffix(l, ".png") },
			signal: syscall.SIGINT, check: pngsDecode},
		{name: "generate before the first image, SIGTERM",
			args:   []string{"generate", "--model", mnist, "--num-images", "8", "--steps", "5000", "--provider", "cpu"},
			ready:  func(l string) bool { return strings.Contains(l, "msg=generating") },
			signal: syscall.SIGTERM},
		{name: "batch, SIGTERM",
			args:   []string{"batch", "--prompts", prompts, "--steps", "30", "--workers", "1", "--progress", "log", "--provider", "cpu"},
			ready:  func(l string) bool { return strings.Contains(l, "msg=progress done=") },
			signal: syscall.SIGTERM, check: pngsDecode},
		{name: "ONNX Runtime start-up, SIGTERM",
			args:   []string{"generate", "--prompt", `"B"`, "--num-images", "400", "--steps", "30", "--log-level", "debug"},
			ready:  func(l string) bool { return strings.Contains(l, "loading ONNX Runtime") },
			signal: syscall.SIGTERM},
		{name: "export, SIGINT",
			args:   []string{"export", "--mode", "ddpo", "--prompts", prompts, "--steps", "20", "--provider", "cpu", "--reward", "color:target=#cc2222"},
			ready:  func(l string) bool { return strings.Contains(l, "(1/400)") },
			signal: syscall.SIGINT},
		{name: "bench steer, SIGTERM",
			args: []string{"bench", "steer", "--model", mnist, "--classifier", classifier, "--mnist-dir", filepath.Dir(classifier),
				"--runs", "8", "--budgets", "2", "--methods", "base,bon,fk", "--steps", "20", "--provider", "cpu"},
			ready:  func(l string) bool { return strings.HasPrefix(l, "bench steer:") },
			signal: syscall.SIGTERM},
		{name: "serve, SIGTERM",
			args:     []string{"serve", "--listen", "127.0.0.1:0", "--provider", "cpu", "--shutdown-grace", "1"},
			ready:    func(l string) bool { return strings.Contains(l, "msg=serving") },
			signal:   syscall.SIGTERM,
			graceful: true},
		{name: "models pull waiting on the network, SIGTERM",
			args:   []string{"models", "pull", "mnist-dit-rf", "--download-mirror", stall.URL},
			env:    []string{"FKSTEER_CACHE=" + t.TempDir()},
			signal: syscall.SIGTERM},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := c.args
			if c.args[0] != "models" && c.args[0] != "bench" && c.args[0] != "serve" {
				args = append(args, "--out", out)
			}
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(append(os.Environ(), "FKSTEER_TEST_MAIN=1"), c.env...)
			pr, pw := io.Pipe()
			cmd.Stdout, cmd.Stderr = pw, pw
			var seen bytes.Buffer
			ready := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(pr)
				once := false
				for sc.Scan() {
					seen.WriteString(sc.Text() + "\n")
					if !once && c.ready != nil && c.ready(strings.TrimSpace(sc.Text())) {
						once = true
						close(ready)
					}
				}
			}()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if c.ready == nil {
				ready = nil
			}
			select {
			case <-ready:
			case <-requested:
			case <-time.After(2 * time.Minute):
				cmd.Process.Kill()
				t.Fatalf("the command never reached the state under test; output:\n%s", seen.String())
			}
			if err := cmd.Process.Signal(c.signal); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(stopBound):
				cmd.Process.Kill()
				<-done
				t.Fatalf("still running %v after %v", stopBound, c.signal)
			}
			took := time.Since(sent)
			pw.Close()
			code := cmd.ProcessState.ExitCode()
			t.Logf("exited %d, %v after the signal", code, took.Round(time.Millisecond))
			want := exitInterrupted
			if c.graceful {
				want = exitOK
			}
			if code != want {
				t.Errorf("exit code %d, want %d; output:\n%s", code, want, seen.String())
			}
			if strings.Contains(seen.String(), "goroutine ") || strings.Contains(seen.String(), "panic:") {
				t.Errorf("a Go stack trace on stop:\n%s", seen.String())
			}
			if c.check != nil {
				c.check(t, out)
			}
		})
	}
}

// pngsDecode checks that every file left in out is a complete PNG and no temporary file remains.
func pngsDecode(t *testing.T, out string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(out, "*.png"))
	if len(files) == 0 {
		t.Fatal("no finished image was kept")
	}
	hidden, _ := filepath.Glob(filepath.Join(out, ".*"))
	for _, h := range hidden {
		if strings.Contains(filepath.Base(h), ".tmp") {
			t.Errorf("temporary file %s left behind", h)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodePNG(data); err != nil {
			t.Errorf("%s does not decode: %v", f, err)
		}
	}
}

func decodePNG(data []byte) (image.Image, error) { return png.Decode(bytes.NewReader(data)) }
