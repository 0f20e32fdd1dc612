package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// glyphPrompts returns n prompts for the glyphs model, varied so items differ.
func glyphPrompts(n int) []string {
	texts := []string{`"A"`, `"B"`, `"7"`, "the word cat", "the word sun", `"Q"`, "the word go", `"3"`}
	colors := []string{"red", "blue", "green", "yellow", "white", "black"}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("a %s %s", colors[i%len(colors)], texts[(i/len(colors))%len(texts)])
	}
	return out
}

func writePrompts(t *testing.T, dir string, n int) string {
	t.Helper()
	return writeFile(t, filepath.Join(dir, "prompts.txt"), strings.Join(glyphPrompts(n), "\n")+"\n")
}

// cliCmd returns the test binary set up to run as the CLI in dir.
func cliCmd(dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "FKSTEER_TEST_MAIN=1"), env...)
	return cmd
}

// records counts the finished items of an output folder.
func records(dir string) int {
	entries, _ := os.ReadDir(filepath.Join(dir, batch.State, "items"))
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

// checkResults checks a finished batch folder: the manifest has exactly one row per item with
// unique ids, every file it lists exists with its size and sha256 and decodes as PNG, and every
// file in the folder besides manifests and summaries is listed (no leftovers, no temporary files).
func checkResults(t *testing.T, out string, items int) []*batch.Record {
	t.Helper()
	recs, err := batch.ReadManifest(filepath.Join(out, batch.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != items {
		t.Fatalf("manifest has %d rows, want %d", len(recs), items)
	}
	listed := map[string]bool{}
	ids := map[string]bool{}
	for i, r := range recs {
		if ids[r.ID] || (i > 0 && r.Index <= recs[i-1].Index) {
			t.Errorf("row %d: id %s repeated or out of order (index %d)", i, r.ID, r.Index)
		}
		ids[r.ID] = true
		for _, f := range r.Files {
			data, err := os.ReadFile(filepath.Join(out, f.Name))
			if err != nil {
				t.Errorf("%s: %v", f.Name, err)
				continue
			}
			h := sha256.Sum256(data)
			if int64(len(data)) != f.Bytes || hex.EncodeToString(h[:]) != f.SHA256 {
				t.Errorf("%s does not match the manifest", f.Name)
			}
			if _, err := png.Decode(bytes.NewReader(data)); err != nil {
				t.Errorf("%s does not decode: %v", f.Name, err)
			}
			if listed[f.Name] {
				t.Errorf("%s is listed twice", f.Name)
			}
			listed[f.Name] = true
		}
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir() && name == batch.State:
		case strings.HasPrefix(name, "manifest") && strings.HasSuffix(name, ".jsonl"):
		case strings.HasPrefix(name, "summary") && strings.HasSuffix(name, ".json"):
		case !listed[name]:
			t.Errorf("%s is in the folder but not in the manifest", name)
		}
	}
	return recs
}

// TestBatchSurvivesSIGKILL runs a 200-item batch, kills it with SIGKILL at three random moments
// (once a random number of items is finished, drawn from a PCG seeded with 20261125; other items
// are in flight at that moment, at whatever stage they have reached), resumes it,
// and checks the result against an uninterrupted run: exactly 200 results, no duplicates, every
// PNG decodes, the manifest matches the files, and every byte equals the reference's.
func TestBatchSurvivesSIGKILL(t *testing.T) {
	modeltest.Runtime(t)
	const items, seed = 200, 20261125
	dir := t.TempDir()
	writePrompts(t, dir, items)
	args := []string{"batch", "--prompts", "prompts.txt", "--steps", "8", "--workers", "2", "--progress", "off"}

	rng := rand.New(rand.NewPCG(seed, 1))
	out := filepath.Join(dir, "killed")
	for kill := range 3 {
		before := records(out)
		if before >= items-1 {
			break
		}
		target := min(before+1+rng.IntN((items-before)/3), items-1)
		cmd := cliCmd(dir, nil, append(args, "--out", out)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Wait, without sleeping for a fixed time, until the target number of items is finished.
		tick := time.NewTicker(2 * time.Millisecond)
		for records(out) < target {
			select {
			case err := <-exited:
				t.Fatalf("kill %d: the batch exited (%v) before %d items were finished: %s", kill+1, err, target, stderr.String())
			case <-tick.C:
			}
		}
		tick.Stop()
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-exited
		t.Logf("kill %d: SIGKILL after %d finished items (target %d)", kill+1, records(out), target)
	}
	code, stdout, stderr := cli(t, dir, append(args, "--out", out, "--json")...)
	if code != 0 {
		t.Fatalf("resume: exit %d: %s", code, stderr)
	}
	var sum batch.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if sum.Items.Finished != items || sum.Items.Skipped == 0 || sum.Items.Skipped+sum.Items.Generated != items {
		t.Errorf("resume summary %+v", sum.Items)
	}
	checkResults(t, out, items)

	ref := filepath.Join(dir, "ref")
	if code, _, stderr := cli(t, dir, append(args, "--out", ref, "--workers", "1")...); code != 0 {
		t.Fatalf("reference run: exit %d: %s", code, stderr)
	}
	sameFiles(t, ref, out)
}

// files maps every file under dir (relative path) to its content, leaving out summaries and
// lock files, which may differ between equal results.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := filepath.Base(p)
		if strings.HasPrefix(base, "summary") || strings.HasPrefix(base, "lock") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(t *testing.T, want, got string) {
	t.Helper()
	a, b := files(t, want), files(t, got)
	var names []string
	for k := range a {
		names = append(names, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	diffs := 0
	for _, k := range names {
		if !bytes.Equal(a[k], b[k]) {
			if diffs++; diffs <= 5 {
				t.Errorf("%s differs (%d bytes in %s, %d in %s)", k, len(a[k]), want, len(b[k]), got)
			}
		}
	}
	if diffs > 5 {
		t.Errorf("... %d files differ in all", diffs)
	}
	if len(a) == 0 {
		t.Error("no files compared")
	}
}

// TestShardsMergeToTheUnshardedRun runs four shards separately, each finding its shard a
// different way (--shard, FKSTEER_SHARD, a Kubernetes Indexed Job's variables, a Slurm array's),
// merges them, and compares every file with one unsharded run: same names, same bytes. The run
// steers with FK and writes contact sheets, so those are covered too.
func TestShardsMergeToTheUnshardedRun(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	writePrompts(t, dir, 13)
	args := []string{"batch", "--prompts", "prompts.txt", "--steps", "6", "--method", "fk", "--particles", "3",
		"--reward", "color:target=#cc2222", "--resample-start", "1", "--resample-every", "2", "--contact-sheet", "--progress", "off"}
	whole := filepath.Join(dir, "whole")
	if code, _, stderr := cli(t, dir, append(args, "--out", whole)...); code != 0 {
		t.Fatalf("unsharded run: exit %d: %s", code, stderr)
	}
	shardEnv := [][]string{
		{}, // --shard 0/4
		{"JOB_COMPLETION_INDEX=1", "JOB_COMPLETIONS=4"},
		{"SLURM_ARRAY_TASK_ID=3", "SLURM_ARRAY_TASK_MIN=1", "SLURM_ARRAY_TASK_MAX=4", "SLURM_ARRAY_TASK_COUNT=4"},
		{"FKSTEER_SHARD=3/4"},
	}
	var srcs []string
	for i, env := range shardEnv {
		out := filepath.Join(dir, fmt.Sprintf("shard%d", i))
		srcs = append(srcs, out)
		a := append(slices.Clone(args), "--out", out)
		if i == 0 {
			a = append(a, "--shard", "0/4")
		}
		cmd := cliCmd(dir, env, a...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("shard %d: %v: %s", i, err, msg)
		}
		if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("manifest.shard-%d-of-4.jsonl", i))); err != nil {
			t.Errorf("shard %d did not run as shard %d of 4: %v", i, i, err)
		}
	}
	merged := filepath.Join(dir, "merged")
	code, stdout, stderr := cli(t, dir, append([]string{"batch", "merge", "--out", merged}, srcs...)...)
	if code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "merged 13 items") {
		t.Errorf("merge output: %s", stdout)
	}
	recs := checkResults(t, merged, 13)
	sameFiles(t, whole, merged)
	kinds := map[string]int{}
	for _, r := range recs {
		for _, f := range r.Files {
			kinds[f.Kind]++
		}
	}
	if kinds["image"] != 13 || kinds["sheet"] != 13 {
		t.Errorf("file kinds %v, want 13 images and 13 sheets", kinds)
	}

	// A missing shard is refused, naming it.
	code, _, stderr = cli(t, dir, append([]string{"batch", "merge", "--out", filepath.Join(dir, "m2")}, srcs[:3]...)...)
	wantError(t, code, stderr, exitError, "shard 3/4 has no manifest", "--partial")
}

// TestBatchItemsFromJSONL checks JSONL items: ids, seeds, overrides, negative prompts and
// references reach the images and the manifest, and an item reproduces with generate.
func TestBatchItemsFromJSONL(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ref.png"), "not really a png")
	writeFile(t, filepath.Join(dir, "items.jsonl"), `{"id": "plain", "prompt": "a red \"A\"", "seed": 42}
{"id": "tuned", "prompt": "the word cat", "seed": 7, "overrides": {"steps": 5, "num-images": 2}, "negative_prompt": "blue", "references": ["ref.png"]}
{"prompt": "\"B\""}
`)
	out := filepath.Join(dir, "out")
	code, stdout, stderr := cli(t, dir, "batch", "--prompts", "items.jsonl", "--out", out, "--steps", "8", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	recs := checkResults(t, out, 3)
	if recs[0].ID != "plain" || recs[1].ID != "tuned" || recs[2].ID != "000002" || recs[0].Seed != 42 || recs[2].Seed != batch.Seed(0, "000002") {
		t.Errorf("records %+v %+v %+v", recs[0], recs[1], recs[2])
	}
	if len(recs[1].Files) != 2 || recs[1].Files[0].Name != "tuned.0.png" || recs[1].Files[1].Seed != 8 || recs[1].NegativePrompt != "blue" || recs[1].References[0] != "ref.png" {
		t.Errorf("tuned item %+v", recs[1])
	}
	params := func(name string) string {
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		entries, err := pngtext.Read(bytes.NewReader(data))
		if err != nil || len(entries) != 1 {
			t.Fatalf("%s: chunks %v, %v", name, entries, err)
		}
		return entries[0].Text
	}
	p := params("tuned.1.png")
	for _, want := range []string{"the word cat\nNegative prompt: blue\n", "Steps: 5", "Seed: 8", "References: ref.png", "Model: glyphs"} {
		if !strings.Contains(p, want) {
			t.Errorf("tuned.1.png parameters %q lack %q", p, want)
		}
	}
	var sum batch.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Images != 4 {
		t.Errorf("summary %+v, %v", sum, err)
	}

	// The plain item is exactly what generate makes with its seed.
	gen := filepath.Join(dir, "gen")
	if code, _, stderr := cli(t, dir, "generate", "--prompt", `a red "A"`, "--seed", "42", "--steps", "8", "--out", gen); code != 0 {
		t.Fatalf("generate: exit %d: %s", code, stderr)
	}
	a, _ := os.ReadFile(filepath.Join(out, "plain.png"))
	b, _ := os.ReadFile(filepath.Join(gen, "42.png"))
	if !bytes.Equal(a, b) {
		t.Error("batch item plain.png differs from generate --seed 42")
	}
}

func TestBatchUserErrors(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "typo.jsonl"), "{\"prompt\": \"x\", \"overrides\": {\"stpes\": 3}}\n")
	writeFile(t, filepath.Join(dir, "model.jsonl"), "{\"prompt\": \"x\", \"overrides\": {\"model\": \"m.yaml\"}}\n")
	writeFile(t, filepath.Join(dir, "type.jsonl"), "{\"prompt\": \"x\", \"overrides\": {\"steps\": \"many\"}}\n")
	writeFile(t, filepath.Join(dir, "key.jsonl"), "{\"promt\": \"x\"}\n")
	writeFile(t, filepath.Join(dir, "ref.jsonl"), "{\"prompt\": \"x\", \"references\": [\"missing.png\"]}\n")
	writeFile(t, filepath.Join(dir, "neg.jsonl"), "{\"prompt\": \"x\", \"negative_prompt\": \"y\", \"overrides\": {\"guidance\": 3}}\n")
	writeFile(t, filepath.Join(dir, "notjson.jsonl"), "{\"prompt\": \"x\"}\n{\"prompt\": \n")
	writeFile(t, filepath.Join(dir, "dup.jsonl"), "{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}\n")
	writeFile(t, filepath.Join(dir, "empty.txt"), "# nothing here\n")
	writePrompts(t, dir, 3)
	cases := []struct {
		name  string
		args  []string
		env   []string
		code  int
		wants []string
	}{
		// Every mistake in the items or the command exits with 2, so that schedulers do not
		// retry what cannot work (README's exit codes; issue 15, defect 10).
		{"no prompts", []string{}, nil, exitUsage, []string{"--prompts FILE"}},
		{"missing file", []string{"--prompts", "nope.txt"}, nil, exitUsage, []string{"nope.txt does not exist"}},
		{"no items", []string{"--prompts", "empty.txt"}, nil, exitUsage, []string{"empty.txt holds no items"}},
		{"not JSON", []string{"--prompts", "notjson.jsonl"}, nil, exitUsage, []string{"notjson.jsonl: line 2: not a JSON object"}},
		{"duplicate ids", []string{"--prompts", "dup.jsonl"}, nil, exitUsage, []string{`line 2: id "a" is already used on line 1`}},
		{"unknown override", []string{"--prompts", "typo.jsonl"}, nil, exitUsage, []string{"item 000000 (line 1)", `unknown key "stpes"`, `did you mean "steps"`}},
		{"override not per item", []string{"--prompts", "model.jsonl"}, nil, exitUsage, []string{"model cannot vary per item"}},
		{"override type", []string{"--prompts", "type.jsonl"}, nil, exitUsage, []string{"steps", `"many" is not a whole number`}},
		{"unknown item key", []string{"--prompts", "key.jsonl"}, nil, exitUsage, []string{"line 1", `unknown key "promt"`, `did you mean "prompt"`}},
		{"missing reference", []string{"--prompts", "ref.jsonl"}, nil, exitUsage, []string{"reference image", "missing.png"}},
		{"negative prompt with guidance", []string{"--prompts", "neg.jsonl"}, nil, exitUsage, []string{"takes no negative prompt"}},
		{"bad shard", []string{"--prompts", "prompts.txt", "--shard", "4/4"}, nil, exitUsage, []string{"shard 4/4"}},
		{"half a k8s shard", []string{"--prompts", "prompts.txt"}, []string{"JOB_COMPLETION_INDEX=2"}, exitUsage, []string{"JOB_COMPLETIONS"}},
		{"bad progress", []string{"--prompts", "prompts.txt", "--progress", "fancy"}, nil, exitUsage, []string{"progress"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, e := range c.env {
				k, v, _ := strings.Cut(e, "=")
				t.Setenv(k, v)
			}
			args := append([]string{"batch", "--out", filepath.Join(t.TempDir(), "out")}, c.args...)
			code, _, stderr := cli(t, dir, args...)
			wantError(t, code, stderr, c.code, c.wants...)
		})
	}
}

// promptReward is a reward for tests. Like a classifier that reads its target class from the
// prompt, it needs the prompt to name a digit, and says so before any work through
// CheckPrompt; and it fails while scoring the images of a prompt that says "explode", a
// failure that only running the item can meet.
type promptReward struct{}

func (promptReward) Name() string { return "test-prompt" }
func (promptReward) Close() error { return nil }

func (promptReward) CheckPrompt(prompt string) error {
	if !strings.ContainsAny(prompt, "0123456789") {
		return fmt.Errorf("reward test-prompt: prompt %q names no class (a digit)", prompt)
	}
	return nil
}

func (promptReward) Score(_ context.Context, imgs pixels.Images, prompt string, dst []float64) error {
	if strings.Contains(prompt, "explode") {
		return errors.New("reward test-prompt: the scorer exploded")
	}
	for i := range dst {
		dst[i] = float64(i)
	}
	return nil
}

func init() {
	rewards.Register("test-prompt", func(*rewards.Options, rewards.Env) (rewards.Reward, error) { return promptReward{}, nil })
}

// TestBatchFailedItemExitCode makes one item fail while sampling and checks that the others
// finish, the exit code is 3, and the summary names the failure.
func TestBatchFailedItemExitCode(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	// The reward fails on item "bad" when it scores it; the others must still be written.
	writeFile(t, filepath.Join(dir, "items.jsonl"), `{"id": "ok1", "prompt": "\"7\""}
{"id": "bad", "prompt": "\"3\" explode"}
{"id": "ok2", "prompt": "\"3\""}
`)
	out := filepath.Join(dir, "out")
	code, stdout, stderr := cli(t, dir, "batch", "--prompts", "items.jsonl", "--out", out, "--steps", "8", "--method", "fk",
		"--particles", "4", "--reward", "test-prompt", "--resample-start", "1", "--resample-every", "2", "--progress", "log")
	if code != exitPartial {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitPartial, stderr)
	}
	if !strings.Contains(stdout, "failed: bad:") || !strings.Contains(stderr, "1 item(s) failed") || !strings.Contains(stderr, `msg="item failed" id=bad`) {
		t.Errorf("the failure is not reported: stdout %s\nstderr %s", stdout, stderr)
	}
	checkResults(t, out, 2)
	if !strings.Contains(stderr, "msg=progress") || !strings.Contains(stderr, "items/s") || !strings.Contains(stderr, "eta=") {
		t.Errorf("no progress lines with rate and ETA in stderr:\n%s", stderr)
	}
}

// TestBatchPromptsThatCannotWorkAreUsageErrors: a prompt that no retry can make work fails the
// batch before any work with exit code 2 (it used to fail its item while running, exit 3): one
// that names none of a class-conditional model's classes, or one the reward cannot score.
func TestBatchPromptsThatCannotWorkAreUsageErrors(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	model := testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	mnist := mnistManifest(t, dir, model) // before cli changes the working folder
	clf := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	writeFile(t, filepath.Join(dir, "items.jsonl"), `{"id": "ok", "prompt": "\"7\""}
{"id": "bad", "prompt": "\"A\""}
`)
	out := filepath.Join(dir, "out")
	code, _, stderr := cli(t, dir, "batch", "--prompts", "items.jsonl", "--out", out, "--steps", "4", "--method", "bon",
		"--particles", "2", "--reward", "test-prompt", "--progress", "off")
	wantError(t, code, stderr, exitUsage, "item bad (line 2)", `prompt "\"A\"" names no class`)
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("the refused batch left %v in %s", entries, out)
	}

	writeFile(t, filepath.Join(dir, "digits.txt"), "3\na cat\n")
	code, _, stderr = cli(t, dir, "batch", "--model", mnist, "--prompts", "digits.txt", "--out", out, "--steps", "4", "--progress", "off")
	wantError(t, code, stderr, exitUsage, "item 000001 (line 2)", `"a cat" names none of the model's classes`)
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("the refused batch left %v in %s", entries, out)
	}

	// The real classifier says so before any work (rewards.Classifier.CheckPrompt).
	r, err := rewards.Parse("classifier:model="+clf+",crop=28", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok := r.(promptChecker); !ok {
		t.Fatal("rewards.Classifier does not implement CheckPrompt: a prompt naming no class would fail only when its item runs")
	}
	code, _, stderr = cli(t, dir, "batch", "--prompts", "items.jsonl", "--out", out, "--steps", "4", "--method", "bon",
		"--particles", "2", "--reward", "classifier:model="+clf+",crop=28", "--progress", "off")
	wantError(t, code, stderr, exitUsage, "item bad (line 2)", "class")
}

// TestBatchRejectsUnworkableItemsUpFront: an item whose settings cannot work (FK with a
// deterministic sampler) is a usage error naming the item, before anything is sampled.
func TestBatchRejectsUnworkableItemsUpFront(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "items.jsonl"), `{"id": "ok1", "prompt": "\"A\""}
{"id": "bad", "prompt": "\"A\"", "overrides": {"sampler": "euler"}}
`)
	out := filepath.Join(dir, "out")
	code, _, stderr := cli(t, dir, "batch", "--prompts", "items.jsonl", "--out", out, "--steps", "8", "--method", "fk",
		"--particles", "4", "--reward", "color:target=#cc2222", "--progress", "off")
	wantError(t, code, stderr, exitUsage, "item bad", "FK steering needs a stochastic sampler")
}

// TestContactSheets checks generate's sheets and grid: one sheet per image, with a row per
// evaluation step plus the final row, and a grid of the final images.
func TestContactSheets(t *testing.T) {
	modeltest.Runtime(t)
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := cli(t, "", "generate", "--prompt", `"A"`, "--method", "fk", "--particles", "5", "--reward", "color:target=#cc2222",
		"--steps", "12", "--resample-start", "2", "--resample-every", "3", "--num-images", "3", "--contact-sheet", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	printed := strings.Fields(stdout)
	if len(printed) != 3 {
		t.Errorf("printed %v", printed)
	}
	// Evaluations at steps 2 and 5 (0-based; resample-end defaults to 60% of 12 = 7): two rows,
	// plus the final row; five particles across.
	for _, seed := range []int{0, 1, 2} {
		f, err := os.Open(filepath.Join(out, fmt.Sprintf("%d.sheet.png", seed)))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bufio.NewReader(f))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		cell, gap, margin := 96, 12, 8
		rows := 3
		if h := cfg.Height; h < rows*cell || h > rows*(cell+80)+80 {
			t.Errorf("sheet %d is %dx%d: not 3 rows of %d-pixel cells", seed, cfg.Width, cfg.Height, cell)
		}
		if w := cfg.Width; w < 2*margin+5*cell+4*gap || w > 2*margin+5*cell+4*gap+200 {
			t.Errorf("sheet %d is %d wide: not 5 cells across", seed, w)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "grid-0-2.png")); err != nil {
		t.Errorf("no grid: %v", err)
	}
}

// folderState maps every file under dir, hidden state and summaries included, to its content:
// what "left as it was" means for a refused command.
func folderState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		out[p] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameState(t *testing.T, want, got map[string]string) {
	t.Helper()
	for p, w := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s is gone", p)
		} else if g != w {
			t.Errorf("%s changed", p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// TestBatchMergeIntoAnotherBatchIsRefused is issue 15's first defect, as reported: merging a
// batch of the MNIST DiT into a folder holding a glyphs batch exited 0, replaced its images and
// lost manifest rows; merging a folder into itself said it held no manifest. Both are refused
// with exit code 2, naming the fix, and leave the folder as it was.
func TestBatchMergeIntoAnotherBatchIsRefused(t *testing.T) {
	modeltest.Runtime(t)
	model := testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	dir := t.TempDir()
	mnist := mnistManifest(t, dir, model)
	writeFile(t, filepath.Join(dir, "p1.txt"), "a red \"A\"\nthe word cat\n\"7\"\n")
	writeFile(t, filepath.Join(dir, "p2.txt"), "3\n7\n")
	if code, _, stderr := cli(t, dir, "batch", "--prompts", "p1.txt", "--out", "A", "--steps", "4", "--progress", "off"); code != 0 {
		t.Fatalf("batch A: exit %d: %s", code, stderr)
	}
	if code, _, stderr := cli(t, dir, "batch", "--model", mnist, "--prompts", "p2.txt", "--out", "B", "--steps", "4", "--progress", "off"); code != 0 {
		t.Fatalf("batch B: exit %d: %s", code, stderr)
	}
	a := filepath.Join(dir, "A")
	before := folderState(t, a)

	code, _, stderr := cli(t, dir, "batch", "merge", "--out", "A", "B")
	wantError(t, code, stderr, exitUsage, "different settings", "merge the results of one job only, into a new --out")
	sameState(t, before, folderState(t, a))

	code, _, stderr = cli(t, dir, "batch", "merge", "--out", "A", "A")
	wantError(t, code, stderr, exitUsage, "merging A into itself", "no shard manifests", "nothing to merge")
	sameState(t, before, folderState(t, a))
	checkResults(t, a, 3)

	// Into a new folder, as the messages say: A's results merge; B's, of other settings, do not
	// join them there either.
	if code, _, stderr := cli(t, dir, "batch", "merge", "--out", "C", "A"); code != 0 {
		t.Fatalf("merge into C: exit %d: %s", code, stderr)
	}
	c := filepath.Join(dir, "C")
	checkResults(t, c, 3)
	before = folderState(t, c)
	code, _, stderr = cli(t, dir, "batch", "merge", "--out", "C", "B")
	wantError(t, code, stderr, exitUsage, "different settings")
	sameState(t, before, folderState(t, c))
}

// TestBatchRefusesFilesItDidNotWrite is issue 15's seventh defect for batch: it replaced a
// user's 000000.png and summary.json. It refuses, exit code 2, naming the file and the fix,
// before any work and without leaving anything behind; --overwrite goes ahead.
func TestBatchRefusesFilesItDidNotWrite(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	writePrompts(t, dir, 2)
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	mine := filepath.Join(out, "000000.png")
	notes := filepath.Join(out, "summary.json")
	writeFile(t, mine, "my own drawing")
	writeFile(t, notes, `{"my": "notes"}`)
	before := folderState(t, out)
	args := []string{"batch", "--prompts", "prompts.txt", "--out", out, "--steps", "4", "--progress", "off"}

	code, _, stderr := cli(t, dir, args...)
	wantError(t, code, stderr, exitUsage, notes, "another --out", "--overwrite")
	sameState(t, before, folderState(t, out))
	os.Remove(notes)
	before = folderState(t, out)
	code, _, stderr = cli(t, dir, args...)
	wantError(t, code, stderr, exitUsage, mine, "no record of item 000000", "another --out", "--overwrite")
	sameState(t, before, folderState(t, out))

	if code, _, stderr := cli(t, dir, append(args, "--overwrite")...); code != 0 {
		t.Fatalf("--overwrite: exit %d: %s", code, stderr)
	}
	checkResults(t, out, 2)
	// Its own files it rewrites freely: a rerun resumes.
	if code, stdout, stderr := cli(t, dir, args...); code != 0 || !strings.Contains(stdout, "2 already done") {
		t.Fatalf("rerun: exit %d: %s%s", code, stdout, stderr)
	}
}

// TestGenerateOverwriteOnlyWhatItMade is issue 15's seventh defect for generate: a run with other
// settings silently replaced <seed>.png of an earlier run. It refuses, exit code 2, naming the
// file and what differs; the same settings rewrite the same bytes; --overwrite replaces.
func TestGenerateOverwriteOnlyWhatItMade(t *testing.T) {
	modeltest.Runtime(t)
	out := filepath.Join(t.TempDir(), "out")
	gen := func(args ...string) (int, string) {
		t.Helper()
		code, _, stderr := cli(t, "", append([]string{"generate", "--out", out, "--seed", "100", "--num-images", "2", "--steps", "5"}, args...)...)
		return code, stderr
	}
	if code, stderr := gen("--prompt", `"P"`); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, stderr)
	}
	first := folderState(t, out)
	if code, stderr := gen("--prompt", `"P"`); code != 0 {
		t.Fatalf("the same run again: exit %d: %s", code, stderr)
	}
	sameState(t, first, folderState(t, out))

	code, stderr := gen("--prompt", `"Q"`)
	wantError(t, code, stderr, exitUsage, filepath.Join(out, "100.png"), `prompt "\"P\"", now "\"Q\""`, "another --out", "--overwrite")
	sameState(t, first, folderState(t, out))
	code, stderr = gen("--prompt", `"P"`, "--steps", "6")
	wantError(t, code, stderr, exitUsage, "100.png", "Steps: 5, now Steps: 6")
	sameState(t, first, folderState(t, out))

	// An image fksteer did not write, where the run would write.
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(out, "101.png"), buf.String())
	mine := folderState(t, out)
	code, stderr = gen("--prompt", `"P"`)
	wantError(t, code, stderr, exitUsage, "101.png", "no parameters chunk")
	sameState(t, mine, folderState(t, out))

	// Other seeds do not meet them; --overwrite replaces them.
	if code, stderr := gen("--prompt", `"Q"`, "--seed", "200"); code != 0 {
		t.Fatalf("other seeds: exit %d: %s", code, stderr)
	}
	if code, stderr := gen("--prompt", `"Q"`, "--overwrite"); code != 0 {
		t.Fatalf("--overwrite: exit %d: %s", code, stderr)
	}
	for _, name := range []string{"100.png", "101.png"} {
		if p, err := generation.PNGParameters(filepath.Join(out, name)); err != nil || !strings.HasPrefix(p, "\"Q\"\n") {
			t.Errorf("%s after --overwrite: %q, %v", name, p, err)
		}
	}

	// A prompt the chunk stores cleaned (invalid UTF-8 becomes U+FFFD) is still the same run.
	odd := filepath.Join(t.TempDir(), "odd")
	for range 2 {
		if code, _, stderr := cli(t, "", "generate", "--out", odd, "--prompt", "caf\xe9", "--steps", "3"); code != 0 {
			t.Fatalf("a prompt of invalid UTF-8, twice: exit %d: %s", code, stderr)
		}
	}
}
