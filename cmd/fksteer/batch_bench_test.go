package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/models/modeltest"
)

// The batch benchmarks generate the same 48 items on the built-in glyphs model (20 steps, base
// sampling) three ways and report images per second:
//
//	go test -run '^$' -bench 'Batch|OneAtATime' -benchtime 3x ./cmd/fksteer/
//
// BenchmarkBatch runs `fksteer batch` with 1 and 2 workers (in-process, one call per
// iteration, so it includes opening the model once). BenchmarkGenerateOneAtATime runs one
// `fksteer generate` process per item with the item's seed, as a shell loop would (process start,
// ONNX Runtime and model load every time); ...InProcess makes the same calls without starting
// processes, which separates the cost of a process from the cost of one model batch per image.
const benchItems, benchSteps = 48, "20"

func benchSetup(b *testing.B) (string, []string) {
	modeltest.Runtime(b)
	dir := b.TempDir()
	prompts := glyphPrompts(benchItems)
	f, err := os.Create(filepath.Join(dir, "prompts.txt"))
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range prompts {
		fmt.Fprintln(f, p)
	}
	f.Close()
	return dir, prompts
}

func BenchmarkBatch(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			dir, _ := benchSetup(b)
			n := 0
			for i := 0; b.Loop(); i++ {
				out := filepath.Join(dir, fmt.Sprintf("out%d", i))
				code, _, stderr := cli(b, dir, "batch", "--prompts", "prompts.txt", "--out", out, "--steps", benchSteps,
					"--workers", strconv.Itoa(workers), "--progress", "off", "--log-level", "warn")
				if code != 0 {
					b.Fatalf("exit %d: %s", code, stderr)
				}
				n += benchItems
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "images/s")
		})
	}
}

func BenchmarkGenerateOneAtATime(b *testing.B) {
	dir, prompts := benchSetup(b)
	n := 0
	for i := 0; b.Loop(); i++ {
		out := filepath.Join(dir, fmt.Sprintf("out%d", i))
		for j, p := range prompts {
			seed := strconv.FormatUint(batch.Seed(0, fmt.Sprintf("%06d", j)), 10)
			cmd := cliCmd(dir, nil, "generate", "--prompt", p, "--seed", seed, "--steps", benchSteps, "--out", out, "--log-level", "warn")
			if msg, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, msg)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "images/s")
}

func BenchmarkGenerateOneAtATimeInProcess(b *testing.B) {
	dir, prompts := benchSetup(b)
	n := 0
	for i := 0; b.Loop(); i++ {
		out := filepath.Join(dir, fmt.Sprintf("out%d", i))
		for j, p := range prompts {
			seed := strconv.FormatUint(batch.Seed(0, fmt.Sprintf("%06d", j)), 10)
			code, _, stderr := cli(b, dir, "generate", "--prompt", p, "--seed", seed, "--steps", benchSteps, "--out", out, "--log-level", "warn")
			if code != 0 {
				b.Fatalf("exit %d: %s", code, stderr)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "images/s")
}
