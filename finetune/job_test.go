package finetune_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/finetune"
)

// TestWorkersAndShardsWriteTheSameBytes: an export with two workers, one sharded into two runs
// with their own folders and merged, and one whose shards share a folder and are merged into it,
// all write the files of a one-worker export byte for byte, shards rolling over at the same
// groups. A sharded run writes no dataset of its own.
func TestWorkersAndShardsWriteTheSameBytes(t *testing.T) {
	p := openGlyphs(t)
	size := twoGroupShard(t, p)
	opts := func(out string) finetune.Options {
		o := glyphOptions(t, finetune.GRPO, out, sixPrompts[:5]...)
		o.ShardSize, o.GlobalStd = size, true // advantages over every group: assembly computes them
		return o
	}
	ref := filepath.Join(t.TempDir(), "ref")
	if sum := export(t, p, opts(ref)); len(sum.Shards) != 3 {
		t.Fatalf("reference export wrote shards %v, want 3", sum.Shards)
	}

	two := filepath.Join(t.TempDir(), "two")
	o := opts(two)
	o.Workers = 2
	export(t, p, o)
	sameFiles(t, ref, two)

	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	var sources []string
	for i := range 2 {
		for _, out := range []string{filepath.Join(root, "s"+string(rune('0'+i))), shared} {
			o := opts(out)
			o.Shard = batch.Shard{Index: i, Count: 2}
			sum := export(t, p, o)
			if sum.Shard != o.Shard.String() || sum.Groups != 3-i || sum.Complete {
				t.Errorf("shard %d: summary %+v", i, sum)
			}
			if _, err := os.Stat(filepath.Join(out, finetune.InfoFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("shard %d wrote a dataset into %s", i, out)
			}
		}
		sources = append(sources, filepath.Join(root, "s"+string(rune('0'+i))))
	}
	merged := filepath.Join(root, "merged")
	sum, err := finetune.Merge(merged, sources, false)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Complete || sum.Groups != 5 || sum.Samples != 20 {
		t.Errorf("merge summary %+v", sum)
	}
	sameFiles(t, ref, merged)
	if _, err := finetune.Merge(shared, []string{shared}, false); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, ref, shared)
}

// TestMergeRefusesMismatches: a merge of shards exported with other settings is refused before
// anything is written, naming what differs; a missing shard is refused unless partial, which
// assembles what there is into a dataset marked incomplete.
func TestMergeRefusesMismatches(t *testing.T) {
	p := openGlyphs(t)
	root := t.TempDir()
	shard := func(name string, i int, steps int) string {
		out := filepath.Join(root, name)
		o := glyphOptions(t, finetune.GRPO, out, resumePrompts[:3]...)
		o.Shard, o.Sampling.Steps = batch.Shard{Index: i, Count: 2}, steps
		export(t, p, o)
		return out
	}
	a, b, other := shard("a", 0, 8), shard("b", 1, 8), shard("c", 1, 6)
	dest := filepath.Join(root, "dest")
	if _, err := finetune.Merge(dest, []string{a, other}, false); err == nil || !strings.Contains(err.Error(), "other settings") || !strings.Contains(err.Error(), "scheduler") {
		t.Errorf("merging other settings: %v", err)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused merge created %s", dest)
	}
	if _, err := finetune.Merge(dest, []string{a}, false); err == nil || !strings.Contains(err.Error(), "--partial") {
		t.Errorf("merging one of two shards: %v", err)
	}
	sum, err := finetune.Merge(dest, []string{a}, true)
	if err != nil {
		t.Fatal(err)
	}
	if d := openDataset(t, dest); sum.Complete || d.Info.Complete || len(d.Rows) != 8 {
		t.Errorf("partial merge: summary %+v, %d rows, complete %v", sum, len(d.Rows), d.Info.Complete)
	}
	// The missing shard merged in later completes the dataset.
	if sum, err := finetune.Merge(dest, []string{a, b}, false); err != nil || !sum.Complete || sum.Samples != 12 {
		t.Errorf("completing merge: %+v, %v", sum, err)
	}
}

// TestExportStopsAtAFailingGroup: a group that fails stops the export with that group's error
// (its prompt and cause); the groups finished before it are assembled into an incomplete
// dataset, and a rerun that can sample the group completes it.
func TestExportStopsAtAFailingGroup(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.GRPO, out, resumePrompts...)
	o.Reward = failOn{o.Reward, `the word dog`}
	_, err := finetune.Export(context.Background(), p, o)
	if err == nil || !strings.Contains(err.Error(), `prompt 3 ("the word dog")`) || !errors.Is(err, errRefused) {
		t.Fatalf("export with a failing group: %v", err)
	}
	if d := openDataset(t, out); d.Info.Complete || len(d.Rows) != 12 {
		t.Errorf("after the failure: %d rows, complete %v", len(d.Rows), d.Info.Complete)
	}
	if sum := export(t, p, glyphOptions(t, finetune.GRPO, out, resumePrompts...)); !sum.Complete || sum.Skipped != 3 || sum.Sampled != 1 {
		t.Errorf("rerun: %+v", sum)
	}
}
