package finetune_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/finetune"
)

var resumePrompts = []string{`"A"`, `a red "B"`, `"C" on navy`, `the word dog`}

// sameData requires two datasets to hold the same samples with the same values and tensors,
// wherever their shards split.
func sameData(t *testing.T, want, got *finetune.Dataset) {
	t.Helper()
	if len(got.Rows) != len(want.Rows) {
		t.Fatalf("%d rows, want %d", len(got.Rows), len(want.Rows))
	}
	for i, w := range want.Rows {
		g := got.Rows[i]
		if g.ID != w.ID || g.Prompt != w.Prompt || g.Reward != w.Reward || g.Advantage != w.Advantage || g.Seed != w.Seed {
			t.Errorf("row %d: %s %q %v %v, want %s %q %v %v", i, g.ID, g.Prompt, g.Reward, g.Advantage, w.ID, w.Prompt, w.Reward, w.Advantage)
		}
		for name := range w.Tensors {
			a, err := want.Tensor(w, name)
			if err != nil {
				t.Fatal(err)
			}
			b, err := got.Tensor(g, name)
			if err != nil {
				t.Fatal(err)
			}
			if a.Dtype != b.Dtype || !bytes.Equal(a.Data, b.Data) {
				t.Errorf("%s: tensor %s differs", g.ID, name)
			}
		}
	}
}

// TestResumeCompletesWithoutDuplicates writes half of a dataset, leaves behind what a killed run
// can (a shard the manifest does not name, a temporary file, an image of an unwritten group, a
// groups file that lags the manifest), and resumes: the result equals an uninterrupted export.
func TestResumeCompletesWithoutDuplicates(t *testing.T) {
	p := openGlyphs(t)
	ref := filepath.Join(t.TempDir(), "ref")
	export(t, p, glyphOptions(t, finetune.GRPO, ref, resumePrompts...))

	out := filepath.Join(t.TempDir(), "ds")
	export(t, p, glyphOptions(t, finetune.GRPO, out, resumePrompts[:2]...))
	leftovers := []string{
		filepath.Join(out, "shards", "shard-00007.safetensors"),
		filepath.Join(out, "shards", ".shard-00001.safetensors.tmp-12345"),
		filepath.Join(out, ".manifest.jsonl.tmp-999"),
		filepath.Join(out, "images", "g000003-01.png"),
	}
	for _, f := range leftovers {
		if err := os.WriteFile(f, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, finetune.GroupsFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := export(t, p, glyphOptions(t, finetune.GRPO, out, resumePrompts...))
	if sum.Skipped != 2 || sum.Samples != 16 || !sum.Complete {
		t.Errorf("summary %+v: want 2 groups skipped, 16 samples", sum)
	}
	for _, f := range leftovers[:3] {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the resume", f)
		}
	}
	// The stale image was removed, and the resumed run wrote the real one in its place.
	if img, err := os.ReadFile(leftovers[3]); err != nil || !bytes.HasPrefix(img, []byte("\x89PNG")) {
		t.Errorf("%s is not the resumed run's PNG (%v)", leftovers[3], err)
	}
	sameData(t, openDataset(t, ref), openDataset(t, out))
	groups, err := finetune.ReadGroups(out)
	if err != nil || len(groups) != 4 {
		t.Errorf("groups file has %d groups (%v)", len(groups), err)
	}
}

// TestCancelledExportKeepsFinishedGroups cancels an export after its second prompt: the groups
// it finished are committed and readable, dataset.json says incomplete, and a second run
// completes the dataset.
func TestCancelledExportKeepsFinishedGroups(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := glyphOptions(t, finetune.GRPO, out, resumePrompts...)
	o.Progress = func(pr finetune.Progress) {
		if pr.Done == 2 {
			cancel()
		}
	}
	if _, err := finetune.Export(ctx, p, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("export returned %v, want context.Canceled", err)
	}
	d := openDataset(t, out)
	if len(d.Rows) != 8 || d.Info.Complete || d.Info.Samples != 8 {
		t.Fatalf("after cancelling: %d rows, info %+v", len(d.Rows), d.Info)
	}
	o.Progress = nil
	if sum := export(t, p, o); sum.Skipped != 2 || sum.Samples != 16 {
		t.Errorf("resume summary %+v", sum)
	}
	if d := openDataset(t, out); !d.Info.Complete || len(d.Rows) != 16 {
		t.Errorf("after resuming: %d rows, complete %v", len(d.Rows), d.Info.Complete)
	}
}

// TestResumeRefusesAnotherDataset: a resume with other settings or prompts, or an export into a
// folder holding other files, is refused with a message naming what differs and the fix.
func TestResumeRefusesAnotherDataset(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	export(t, p, glyphOptions(t, finetune.GRPO, out, resumePrompts[:1]...))

	o := glyphOptions(t, finetune.GRPO, out, resumePrompts[:1]...)
	o.Sampler.Steps = 9
	_, err := finetune.Export(context.Background(), p, o)
	if err == nil || !strings.Contains(err.Error(), "other settings") || !strings.Contains(err.Error(), "scheduler") {
		t.Errorf("changed steps: %v", err)
	}
	o = glyphOptions(t, finetune.DDPO, out, resumePrompts[:1]...)
	if _, err := finetune.Export(context.Background(), p, o); err == nil || !strings.Contains(err.Error(), "grpo dataset") {
		t.Errorf("changed mode: %v", err)
	}
	o = glyphOptions(t, finetune.GRPO, out, `"Z"`)
	if _, err := finetune.Export(context.Background(), p, o); err == nil || !strings.Contains(err.Error(), "same prompts file") {
		t.Errorf("changed prompt: %v", err)
	}
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	o = glyphOptions(t, finetune.GRPO, foreign, resumePrompts[:1]...)
	if _, err := finetune.Export(context.Background(), p, o); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("foreign folder: %v", err)
	}
}
