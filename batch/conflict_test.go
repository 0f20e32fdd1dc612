package batch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// everything maps every file under dir, summaries, state and lock files included, to its
// content: what "as it was" means for a refused run or merge.
func everything(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		data, err := os.ReadFile(p)
		out[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantConflict checks that err is a *ConflictError whose message says every one of wants, and
// that dir is exactly as before.
func wantConflict(t *testing.T, err error, dir string, before map[string]string, wants ...string) {
	t.Helper()
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *ConflictError", err, err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	sameTree(t, before, everything(t, dir))
}

func withFingerprint(fp string, shard Shard) func(*Job) {
	return func(j *Job) { j.Fingerprint, j.Shard = fp, shard }
}

// runShards runs every shard of n over its, each in a folder of its own, with job fingerprint fp
// ("" for none), and returns the folders in shard order.
func runShards(t *testing.T, its []Item, n int, fp string) []string {
	t.Helper()
	var dirs []string
	for i := range n {
		d := t.TempDir()
		dirs = append(dirs, d)
		if _, err := runJob(t, d, its, &fakeWork{settings: "a"}, withFingerprint(fp, Shard{i, n})); err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

// TestMergeIntoAnUnshardedBatchIsRefused is issue 15's first defect: merging the results of
// another job into a folder holding an unsharded batch replaced its images and lost manifest
// rows, and merging a folder into itself said it held no manifest.
func TestMergeIntoAnUnshardedBatchIsRefused(t *testing.T) {
	a := t.TempDir()
	if _, err := runJob(t, a, items(4), &fakeWork{settings: "a"}, withFingerprint("job-a", Whole)); err != nil {
		t.Fatal(err)
	}
	before := everything(t, a)

	// Another job (other settings, the same ids).
	b := t.TempDir()
	if _, err := runJob(t, b, items(3), &fakeWork{settings: "b"}, withFingerprint("job-b", Whole)); err != nil {
		t.Fatal(err)
	}
	_, err := Merge(a, []string{b}, false)
	wantConflict(t, err, a, before, "different settings", "new --out")

	// A shard of the same job: still refused, since rerunning the batch would drop the rows.
	s := t.TempDir()
	if _, err := runJob(t, s, items(4), &fakeWork{settings: "a"}, withFingerprint("job-a", Shard{1, 2})); err != nil {
		t.Fatal(err)
	}
	_, err = Merge(a, []string{s}, false)
	wantConflict(t, err, a, before, "holds the results of an unsharded batch", "merge into a new folder")

	// Into itself: nothing to merge, said as such.
	_, err = Merge(a, []string{a}, false)
	wantConflict(t, err, a, before, "merging "+a+" into itself", "no shard manifests", "nothing to merge")

	// The fix the messages name works: a new folder gets both.
	m := filepath.Join(t.TempDir(), "new")
	ms, err := Merge(m, []string{a, s}, false)
	if err != nil || ms.Items != 4 {
		t.Fatalf("merge into a new folder: %+v, %v", ms, err)
	}
}

// TestMergeAddsToAnEarlierMerge: a merge into the output of an earlier merge keeps the items it
// had, and refuses another job's results there without changing anything.
func TestMergeAddsToAnEarlierMerge(t *testing.T) {
	shards := runShards(t, items(7), 2, "job-a")
	m := t.TempDir()
	if ms, err := Merge(m, shards[:1], true); err != nil || ms.Items != 4 {
		t.Fatalf("first merge: %+v, %v", ms, err)
	}
	ms, err := Merge(m, shards[1:], true)
	if err != nil || ms.Items != 7 || ms.Copied != 6 { // three items, an image and a sheet each
		t.Fatalf("second merge: %+v, %v", ms, err)
	}
	all := t.TempDir()
	if _, err := Merge(all, shards, false); err != nil {
		t.Fatal(err)
	}
	sameTree(t, tree(t, all), tree(t, m))

	// Another job's items under other ids: the job fingerprints tell them apart.
	other := make([]Item, 3)
	for i := range other {
		other[i] = Item{ID: fmt.Sprintf("x%d", i), Prompt: "other", Index: i, Line: i + 1}
	}
	o := t.TempDir()
	if _, err := runJob(t, o, other, &fakeWork{settings: "a"}, withFingerprint("job-b", Whole)); err != nil {
		t.Fatal(err)
	}
	before := everything(t, m)
	_, err = Merge(m, []string{o}, true)
	wantConflict(t, err, m, before, "different settings", "job-a", "job-b")

	// An item of the earlier merge that was since damaged, and that no source has, is not
	// silently dropped.
	os.Remove(filepath.Join(m, "000000.png"))
	if _, err := Merge(m, shards[1:], false); err == nil || !strings.Contains(err.Error(), "item 000000 of the earlier merge") {
		t.Errorf("a damaged earlier item: %v", err)
	}
}

// TestMergeRefusesFilesItDidNotWrite: a destination's own files are never replaced, and a
// refused or failed merge leaves it as it was.
func TestMergeRefusesFilesItDidNotWrite(t *testing.T) {
	its := items(5)
	src := t.TempDir()
	if _, err := runJob(t, src, its, &fakeWork{settings: "a"}, nil); err != nil {
		t.Fatal(err)
	}

	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "000003.png"), []byte("my own drawing"), 0o644)
	before := everything(t, d)
	_, err := Merge(d, []string{src}, false)
	wantConflict(t, err, d, before, filepath.Join(d, "000003.png"), "move it away")

	d = t.TempDir()
	os.WriteFile(filepath.Join(d, SummaryName), []byte(`{"my": "notes"}`), 0o644)
	before = everything(t, d)
	_, err = Merge(d, []string{src}, false)
	wantConflict(t, err, d, before, filepath.Join(d, SummaryName), "not written by fksteer batch merge")

	// A file of the item that is the same bytes is no conflict: a merge killed after copying it.
	d = t.TempDir()
	data, _ := os.ReadFile(filepath.Join(src, "000003.png"))
	os.WriteFile(filepath.Join(d, "000003.png"), data, 0o644)
	if ms, err := Merge(d, []string{src}, false); err != nil || ms.Copied != 9 {
		t.Errorf("merge over an identical file: %+v, %v", ms, err)
	}

	// A corrupt source file, met after other items' files would have been copied, stops the
	// merge before it writes anything.
	os.WriteFile(filepath.Join(src, "000004.sheet.png"), []byte("bad"), 0o644)
	d = filepath.Join(t.TempDir(), "fresh")
	_, err = Merge(d, []string{src}, false)
	if err == nil || !strings.Contains(err.Error(), "does not match its record") {
		t.Fatalf("corrupt source: %v", err)
	}
	if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused merge left %s behind: %v", d, everything(t, d))
	}
}

// TestJobRefusesFilesItDidNotWrite is issue 15's seventh defect: a batch replaced a user's
// 000000.png and summary.json. Now the job refuses before any work, naming the file and the
// fix, and leaves the folder as it was; --overwrite replaces them.
func TestJobRefusesFilesItDidNotWrite(t *testing.T) {
	for _, name := range []string{"000001.png", "000002.sheet.png", SummaryName, ManifestName} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, name), []byte("mine"), 0o644)
		before := everything(t, dir)
		w := &fakeWork{settings: "a"}
		_, err := runJob(t, dir, items(3), w, nil)
		wantConflict(t, err, dir, before, filepath.Join(dir, name), "another --out", "--overwrite")
		if n := w.rendered.Load(); n != 0 {
			t.Errorf("%s: %d items rendered before the refusal", name, n)
		}
		if _, err := runJob(t, dir, items(3), w, func(j *Job) { j.Overwrite = true }); err != nil {
			t.Fatalf("%s with Overwrite: %v", name, err)
		}
		if data, _ := os.ReadFile(filepath.Join(dir, name)); string(data) == "mine" {
			t.Errorf("%s was not replaced with Overwrite", name)
		}
	}

	// A shard's job owns only its items' names and its own manifest and summary.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "000001.png"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(dir, SummaryName), []byte("mine"), 0o644)
	if _, err := runJob(t, dir, items(3), &fakeWork{settings: "a"}, func(j *Job) { j.Shard = Shard{0, 2} }); err != nil {
		t.Errorf("shard 0/2 beside a user's 000001.png and summary.json: %v", err)
	}

	// An unsharded batch would rewrite a merge's manifest without the merged items.
	dir = t.TempDir()
	if _, err := runJob(t, dir, items(4), &fakeWork{settings: "a"}, func(j *Job) { j.Shard = Shard{0, 2} }); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(dir, []string{dir}, true); err != nil {
		t.Fatal(err)
	}
	before := everything(t, dir)
	_, err := runJob(t, dir, items(4), &fakeWork{settings: "a"}, nil)
	wantConflict(t, err, dir, before, "fksteer batch merge", "another --out")
}

// TestCrashBetweenFilesAndRecordIsNotAConflict: the files of an item whose run was killed
// before its record are the job's own (its write intent says so), so the rerun redoes the item
// instead of refusing; a finished item's leftover intent is removed.
func TestCrashBetweenFilesAndRecordIsNotAConflict(t *testing.T) {
	dir := t.TempDir()
	if _, err := runJob(t, dir, items(4), &fakeWork{settings: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	want := tree(t, dir)
	// Item 2: files written, record not. Item 3: killed after its record, before the intent went.
	os.Remove(recordPath(dir, "000002"))
	writeIntent(dir, "000002", []string{"000002.png", "000002.sheet.png"})
	writeIntent(dir, "000003", []string{"000003.png", "000003.sheet.png"})
	w := &fakeWork{settings: "a"}
	if _, err := runJob(t, dir, items(4), w, nil); err != nil {
		t.Fatal(err)
	}
	if len(w.ids) != 1 || w.ids[0] != "000002" {
		t.Errorf("redid %v, want [000002]", w.ids)
	}
	sameTree(t, want, tree(t, dir))
}

// TestJobFingerprintIsRecordedAndChecked: every record carries the job's fingerprint, and a
// rerun with another one is a conflict naming --overwrite, like a changed item.
func TestJobFingerprintIsRecordedAndChecked(t *testing.T) {
	dir := t.TempDir()
	if _, err := runJob(t, dir, items(2), &fakeWork{settings: "a"}, withFingerprint("job-a", Whole)); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadManifest(filepath.Join(dir, ManifestName))
	if err != nil || len(recs) != 2 || recs[0].JobFingerprint != "job-a" || recs[1].JobFingerprint != "job-a" {
		t.Fatalf("records %+v, %v", recs, err)
	}
	before := everything(t, dir)
	_, err = runJob(t, dir, items(2), &fakeWork{settings: "a"}, withFingerprint("job-b", Whole))
	wantConflict(t, err, dir, before, "2 finished item(s)", "other settings", "--overwrite")

	// Records from before job fingerprints were recorded resume, by their items' fingerprints.
	old := t.TempDir()
	if _, err := runJob(t, old, items(2), &fakeWork{settings: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	w := &fakeWork{settings: "a"}
	if sum, err := runJob(t, old, items(2), w, withFingerprint("job-a", Whole)); err != nil || sum.Items.Skipped != 2 || w.rendered.Load() != 0 {
		t.Errorf("resuming records without a job fingerprint: %+v, %v", sum, err)
	}
}

// TestWriteFailuresNameOnlyWrittenFiles is part of issue 15's fourteenth defect: on a full disk
// the batch named a manifest and summary it never wrote. A failed write names its target (not
// the vanished temporary file), an unwritten manifest or summary is not reported as written,
// and a full disk stops the job at once instead of failing every remaining item.
func TestWriteFailuresNameOnlyWrittenFiles(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	its := items(4)
	w := &fakeWork{settings: "a"}
	// Item 2 takes the output folder away while it renders (a file where the folder was), so
	// every later write into the folder fails.
	var sum *Summary
	var err error
	sum, err = runJob(t, dir, its, w, func(j *Job) {
		j.Workers, j.MaxFailures = 1, -1
		prepare := j.Prepare
		j.Prepare = func(it Item) (Task, error) {
			task, err := prepare(it)
			if it.ID == "000002" {
				render := task.Render
				task.Render = func(ctx context.Context) ([]File, error) {
					os.Rename(dir, dir+".moved")
					os.WriteFile(dir, []byte("not a folder"), 0o644)
					return render(ctx)
				}
			}
			return task, err
		}
	})
	if err == nil || !strings.Contains(err.Error(), "write "+filepath.Join(dir, ManifestName)+": ") || strings.Contains(err.Error(), ".tmp-") {
		t.Errorf("error %v, want one naming %s and no temporary file", err, ManifestName)
	}
	if !strings.Contains(err.Error(), "2 finished item(s) are kept") {
		t.Errorf("error %v does not say what was kept", err)
	}
	if sum == nil || sum.Manifest != "" || sum.SummaryFile != "" {
		t.Fatalf("summary %+v claims a manifest or summary file", sum)
	}
	if len(sum.Failures) != 2 || strings.Contains(sum.Failures[0].Error, ".tmp-") || !strings.HasPrefix(sum.Failures[0].Error, "write "+filepath.Join(dir, State)) {
		t.Errorf("failures %+v", sum.Failures)
	}

	// A full disk stops the job after the first item that meets it.
	w = &fakeWork{settings: "a", fail: map[string]bool{"000001": true}}
	full := fmt.Errorf("write x.png: %w", syscall.ENOSPC)
	_, err = runJob(t, t.TempDir(), items(30), &fakeWork{settings: "a"}, func(j *Job) {
		j.Workers = 1
		j.Prepare = func(it Item) (Task, error) {
			task, err := w.prepare(it)
			if it.ID == "000001" {
				task.Render = func(context.Context) ([]File, error) { return nil, full }
			}
			return task, err
		}
	})
	var fe *FailedError
	if !errors.As(err, &fe) || !fe.Stopped || fe.Failed != 1 || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("full disk: %v", err)
	}
	if n := w.rendered.Load(); n != 1 {
		t.Errorf("%d items rendered, want 1: the one before the disk was full", n)
	}
}
