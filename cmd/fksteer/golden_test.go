package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden/outputs.json from this build's outputs")

// goldenRuns are the runs whose every output file is pinned by testdata/golden/outputs.json:
// generate (base, FK with sheets and a grid, chunked), batch (text and JSONL items, overrides,
// sheets) and export (every mode the glyphs model can run). They were recorded before the
// generation API redesign (issue 13), so that a refactor which changes a byte of an image, a
// parameters chunk, a batch manifest or a dataset fails here. They use the built-in glyphs model
// only: it computes in float64, so its outputs do not depend on which CPU kernels ONNX Runtime
// picks on the machine (a float32 model's last bits do).
var goldenRuns = []struct {
	name string
	args []string
}{
	{"generate-base", []string{"generate", "--prompt", `"A" on black`, "--steps", "6", "--num-images", "3", "--batch-size", "2", "--seed", "5"}},
	{"generate-fk", []string{"generate", "--prompt", `a red "A"`, "--steps", "6", "--method", "fk", "--particles", "3",
		"--reward", "color:target=#cc2222", "--num-images", "3", "--batch-size", "2", "--contact-sheet"}},
	{"generate-negative", []string{"generate", "--prompt", `"Q"`, "--steps", "4", "--sampler", "euler-a", "--eta", "0.5", "--seed", "11",
		"--method", "bon", "--particles", "2", "--reward", "color:target=#22cc22"}},
	{"batch-text", []string{"batch", "--prompts", "prompts.txt", "--steps", "6", "--method", "fk", "--particles", "3",
		"--reward", "color:target=#cc2222", "--contact-sheet"}},
	{"batch-jsonl", []string{"batch", "--prompts", "items.jsonl", "--steps", "6", "--seed", "3"}},
	{"export-ddpo", []string{"export", "--mode", "ddpo", "--prompts", "prompts.txt", "--samples", "2", "--steps", "5", "--reward", "color:target=#cc2222"}},
	{"export-d3po", []string{"export", "--mode", "d3po", "--prompts", "prompts.txt", "--samples", "2", "--steps", "5", "--reward", "color:target=#cc2222"}},
	{"export-prdp", []string{"export", "--mode", "prdp", "--prompts", "prompts.txt", "--samples", "2", "--steps", "5", "--reward", "color:target=#cc2222", "--float16"}},
	{"export-grpo", []string{"export", "--mode", "grpo", "--prompts", "prompts.txt", "--samples", "3", "--steps", "5", "--reward", "color:target=#cc2222"}},
	{"export-steered", []string{"export", "--mode", "steered", "--prompts", "prompts.txt", "--samples", "3", "--steps", "6", "--reward", "color:target=#cc2222"}},
}

// volatileKeys are summary.json's fields that measure the run rather than describe its
// outputs; they are dropped before hashing.
var volatileKeys = []string{"seconds", "images_per_second", "workers"}

// TestGoldenOutputs runs goldenRuns and compares the sha256 of every file they write with the
// recorded one. Run with -update-golden to record a deliberate change of outputs (and say why
// in the commit).
func TestGoldenOutputs(t *testing.T) {
	path, err := filepath.Abs(filepath.Join("testdata", "golden", "outputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "prompts.txt"), "\"A\" on black\n\n# a comment\n\"B\"\n")
	writeFile(t, filepath.Join(dir, "items.jsonl"), `{"id":"x1","prompt":"\"C\"","overrides":{"steps":5,"guidance":1}}
{"prompt":"\"D\"","seed":9}
{"id":"neg","prompt":"\"E\"","negative_prompt":"blurry"}
`)
	got := map[string]string{}
	for _, r := range goldenRuns {
		out := filepath.Join(dir, r.name)
		code, _, stderr := cli(t, dir, append(r.args, "--out", out)...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", r.name, code, stderr)
		}
		err = filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == ".fksteer-batch" {
				return filepath.SkipDir // resume state, not an output
			}
			if d.IsDir() {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if d.Name() == "summary.json" {
				data = withoutKeys(t, data, volatileKeys)
			}
			rel, _ := filepath.Rel(dir, path)
			sum := sha256.Sum256(data)
			got[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if *updateGolden {
		data, _ := json.MarshalIndent(got, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %d files in %s", len(got), path)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (record it with go test -run TestGoldenOutputs -update-golden)", err)
	}
	var want map[string]string
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	var diffs []string
	for name, w := range want {
		switch g, ok := got[name]; {
		case !ok:
			diffs = append(diffs, "missing: "+name)
		case g != w:
			diffs = append(diffs, "changed: "+name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			diffs = append(diffs, "new: "+name)
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 0 {
		t.Errorf("%d of %d golden files differ:\n%s", len(diffs), len(want), strings.Join(diffs, "\n"))
	}
}

// withoutKeys re-encodes a JSON object without the given top-level keys.
func withoutKeys(t *testing.T, data []byte, keys []string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	for _, k := range keys {
		delete(m, k)
	}
	out, _ := json.Marshal(m)
	return out
}
