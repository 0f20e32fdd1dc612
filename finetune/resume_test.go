package finetune_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/finetune/finetunetest"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
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
// or an older dataset can (a shard the manifest does not name, temporary files in the dataset
// and in the work folder, an image of an unwritten group, a groups file that lags the
// manifest), and resumes: the result equals an uninterrupted export, byte for byte.
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
		filepath.Join(finetune.WorkDir(out), ".g000002.safetensors.tmp-77"),
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
	for _, f := range leftovers[:4] {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the resume", f)
		}
	}
	// The stale image was removed, and the resumed run wrote the real one in its place.
	if img, err := os.ReadFile(leftovers[4]); err != nil || !bytes.HasPrefix(img, []byte("\x89PNG")) {
		t.Errorf("%s is not the resumed run's PNG (%v)", leftovers[4], err)
	}
	sameData(t, openDataset(t, ref), openDataset(t, out))
	sameFiles(t, ref, out)
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
	o.Sampling.Steps = 9
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

// sixPrompts make three shards of two groups each at twoGroupShard's size.
var sixPrompts = []string{`"A"`, `a red "B"`, `"C" on navy`, `the word dog`, `"E"`, `a blue "F"`}

// twoGroupShard returns a shard size that holds exactly two of the glyph groups of glyphOptions
// (a shard rolls over before a group that would take it past the size).
func twoGroupShard(t *testing.T, p pipelines.Pipeline) int64 {
	t.Helper()
	sum := export(t, p, glyphOptions(t, finetune.GRPO, filepath.Join(t.TempDir(), "one"), sixPrompts[0]))
	return sum.Bytes * 5 / 2
}

// sameFiles requires two dataset folders to hold the same files, byte for byte.
var sameFiles = finetunetest.SameFiles

// TestResumeRepairsDamage damages a finished dataset twice. Damage to the dataset's own files (a
// truncated shard in the middle, a deleted image of the last shard) needs no sampling: the
// dataset is assembled again from the finished groups. Damage to the groups' records of the
// batch protocol (a truncated tensor file, a deleted image in the work folder) redoes exactly
// those groups. Either way the rerun ends with the files an undamaged export writes, byte for
// byte, and every file the manifest names records its sha256.
func TestResumeRepairsDamage(t *testing.T) {
	p := openGlyphs(t)
	size := twoGroupShard(t, p)
	opts := func(out string) finetune.Options {
		o := glyphOptions(t, finetune.GRPO, out, sixPrompts...)
		o.ShardSize = size
		return o
	}
	ref := filepath.Join(t.TempDir(), "ref")
	if sum := export(t, p, opts(ref)); len(sum.Shards) != 3 || sum.Sampled != 6 {
		t.Fatalf("reference export wrote shards %v and sampled %d groups, want 3 shards of two groups and 6", sum.Shards, sum.Sampled)
	}
	for _, r := range openDataset(t, ref).Rows {
		if len(r.ImageSHA256) != 64 || len(r.ShardSHA256) != 64 {
			t.Fatalf("row %s records image sha256 %q and shard sha256 %q", r.ID, r.ImageSHA256, r.ShardSHA256)
		}
	}

	out := filepath.Join(t.TempDir(), "ds")
	export(t, p, opts(out))
	truncate := func(path string) {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, st.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	truncate(filepath.Join(out, "shards", "shard-00000.safetensors"))
	if err := os.Remove(filepath.Join(out, "images", "g000005-02.png")); err != nil {
		t.Fatal(err)
	}
	if sum := export(t, p, opts(out)); sum.Sampled != 0 || sum.Skipped != 6 || !sum.Complete || sum.Samples != 24 {
		t.Errorf("after damage to the dataset: summary %+v, want nothing sampled, 24 samples, complete", sum)
	}
	sameFiles(t, ref, out)

	work := finetune.WorkDir(out)
	truncate(filepath.Join(work, "g000001.safetensors"))
	if err := os.Remove(filepath.Join(work, "g000004.02.png")); err != nil {
		t.Fatal(err)
	}
	if sum := export(t, p, opts(out)); sum.Redone != 2 || sum.Sampled != 2 || sum.Skipped != 4 || !sum.Complete {
		t.Errorf("after damage to the work folder: summary %+v, want groups 1 and 4 redone, 4 kept, complete", sum)
	}
	sameFiles(t, ref, out)
	// A rerun of the repaired dataset finds nothing to redo.
	if sum := export(t, p, opts(out)); sum.Redone != 0 || sum.Sampled != 0 || sum.Skipped != 6 {
		t.Errorf("second rerun: %+v", sum)
	}
}

// TestInterruptedExportResumesToTheSameLayout stops an export after each of its first prompts
// in turn and resumes it: the shards (which the interrupted run commits early) end up holding
// the same groups and bytes as an uninterrupted export's, and so does every other file.
func TestInterruptedExportResumesToTheSameLayout(t *testing.T) {
	p := openGlyphs(t)
	size := twoGroupShard(t, p)
	prompts := sixPrompts[:5]
	opts := func(out string) finetune.Options {
		o := glyphOptions(t, finetune.GRPO, out, prompts...)
		o.ShardSize = size
		return o
	}
	ref := filepath.Join(t.TempDir(), "ref")
	export(t, p, opts(ref))
	for _, stop := range []int{1, 3} {
		out := filepath.Join(t.TempDir(), "ds")
		ctx, cancel := context.WithCancel(context.Background())
		o := opts(out)
		o.Progress = func(pr finetune.Progress) {
			if pr.Done == stop {
				cancel()
			}
		}
		if _, err := finetune.Export(ctx, p, o); !errors.Is(err, context.Canceled) {
			t.Fatalf("stop after %d: export returned %v, want context.Canceled", stop, err)
		}
		cancel()
		if d := openDataset(t, out); d.Info.Complete || len(d.Rows) != 4*stop {
			t.Fatalf("stop after %d: %d rows, complete %v", stop, len(d.Rows), d.Info.Complete)
		}
		if sum := export(t, p, opts(out)); sum.Skipped != stop || sum.Redone != 0 {
			t.Errorf("stop after %d: resume summary %+v", stop, sum)
		}
		sameFiles(t, ref, out)
	}
}

// nanReward scores every image NaN, as a reward that cannot judge any image does.
type nanReward struct{}

func (nanReward) Name() string { return "nan" }
func (nanReward) Score(_ context.Context, imgs pixels.Images, _ string, dst []float64) error {
	for i := range dst {
		dst[i] = math.NaN()
	}
	return nil
}
func (nanReward) Close() error { return nil }

// TestAllNaNRewardsHaveNoStatistics: a group whose every reward is NaN has no mean and no std:
// groups.jsonl says null, not 0 (which would pass for a measured reward), and the summary counts
// the samples without a reward so that front ends can warn.
func TestAllNaNRewardsHaveNoStatistics(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.GRPO, out, resumePrompts[:2]...)
	o.Reward, o.RewardSpec = nanReward{}, "nan"
	sum := export(t, p, o)
	if sum.NoReward != 8 || sum.Samples != 8 {
		t.Errorf("summary counts %d of %d samples without a reward, want 8 of 8", sum.NoReward, sum.Samples)
	}
	data, err := os.ReadFile(filepath.Join(out, finetune.GroupsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("groups.jsonl has %d lines, want 2", len(lines))
	}
	for _, line := range lines {
		if !strings.Contains(line, `"reward_mean":null`) || !strings.Contains(line, `"reward_std":null`) {
			t.Errorf("group line %s: want reward_mean and reward_std null", line)
		}
	}
	groups, err := finetune.ReadGroups(out)
	if err != nil {
		t.Fatal(err)
	}
	if g := groups[0]; !math.IsNaN(float64(g.Mean)) || !math.IsNaN(float64(g.Std)) || !math.IsNaN(float64(g.Advantages[0])) {
		t.Errorf("group %s: mean %v, std %v, advantage %v: want NaN (null)", g.Group, g.Mean, g.Std, g.Advantages[0])
	}
}
