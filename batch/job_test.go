package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeWork stands in for a model: deterministic files from an item's ID, seed and settings, and
// a count of the items it rendered.
type fakeWork struct {
	settings string
	images   int             // images per item (1 by default)
	fail     map[string]bool // items whose Render fails
	block    map[string]bool // items whose Render waits for cancellation
	started  chan string     // receives the ID of every blocking item that starts
	rendered atomic.Int64
	mu       sync.Mutex
	ids      []string
}

func (w *fakeWork) prepare(it Item) (Task, error) {
	if strings.Contains(it.Prompt, "bad") {
		return Task{}, errors.New("bad prompt")
	}
	seed := Seed(1, it.ID)
	return Task{
		Seed:        seed,
		Fingerprint: "fp:" + w.settings,
		Render: func(ctx context.Context) ([]File, error) {
			w.rendered.Add(1)
			w.mu.Lock()
			w.ids = append(w.ids, it.ID)
			w.mu.Unlock()
			if w.block[it.ID] {
				w.started <- it.ID
				<-ctx.Done()
				return nil, ctx.Err()
			}
			if w.fail[it.ID] {
				return nil, fmt.Errorf("model exploded on %s", it.ID)
			}
			n := max(1, w.images)
			var files []File
			for j := range n {
				suffix := ".png"
				if n > 1 {
					suffix = fmt.Sprintf(".%d.png", j)
				}
				r := float64(seed%1000) / 1000
				files = append(files, File{Suffix: suffix, Kind: KindImage, Seed: seed + uint64(j), Reward: &r,
					Data: []byte(fmt.Sprintf("%s|%d|%s|%d", it.ID, seed, w.settings, j))})
			}
			files = append(files, File{Suffix: ".sheet.png", Kind: "sheet", Data: []byte("sheet " + it.ID)})
			return files, nil
		},
	}, nil
}

func items(n int) []Item {
	out := make([]Item, n)
	for i := range out {
		out[i] = Item{ID: fmt.Sprintf("%06d", i), Prompt: fmt.Sprintf("prompt %d", i), Index: i, Line: i + 1}
	}
	return out
}

func runJob(t *testing.T, dir string, its []Item, w *fakeWork, edit func(*Job)) (*Summary, error) {
	t.Helper()
	j := &Job{Dir: dir, Items: its, Workers: 3, Prepare: w.prepare}
	if edit != nil {
		edit(j)
	}
	return j.Run(context.Background())
}

// tree maps every file under dir (relative path) to its content, leaving out summaries and the
// lock files, which are allowed to differ between equal results.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		base := filepath.Base(p)
		if strings.HasPrefix(base, "summary") || strings.HasPrefix(base, "lock") {
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

func sameTree(t *testing.T, a, b map[string]string) {
	t.Helper()
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
	for _, k := range names {
		if a[k] != b[k] {
			t.Errorf("%s differs: %q vs %q", k, trim(a[k]), trim(b[k]))
		}
	}
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func TestJobWritesFilesRecordsManifestAndSummary(t *testing.T) {
	dir := t.TempDir()
	w := &fakeWork{settings: "a", images: 2}
	sum, err := runJob(t, dir, items(10), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Items.Finished != 10 || sum.Items.Generated != 10 || sum.Images != 20 || sum.GeneratedImages != 20 || sum.Reward == nil || sum.Reward.Count != 20 {
		t.Errorf("summary %+v", sum)
	}
	recs, err := ReadManifest(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 10 {
		t.Fatalf("%d manifest rows, want 10", len(recs))
	}
	for i, r := range recs {
		if r.Index != i || r.ID != fmt.Sprintf("%06d", i) || r.Seed != Seed(1, r.ID) || len(r.Files) != 3 {
			t.Errorf("row %d: %+v", i, r)
		}
		for _, f := range r.Files {
			data, err := os.ReadFile(filepath.Join(dir, f.Name))
			if err != nil || int64(len(data)) != f.Bytes {
				t.Errorf("%s: %v", f.Name, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, SummaryName)); err != nil {
		t.Error(err)
	}
}

func TestRerunSkipsFinishedItemsAndRedoesDamagedOnes(t *testing.T) {
	dir := t.TempDir()
	if _, err := runJob(t, dir, items(12), &fakeWork{settings: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dir)

	w := &fakeWork{settings: "a"}
	sum, err := runJob(t, dir, items(12), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.rendered.Load() != 0 || sum.Items.Skipped != 12 {
		t.Fatalf("a rerun rendered %d items and skipped %d; want 0 and 12", w.rendered.Load(), sum.Items.Skipped)
	}

	// Damage: a truncated image, a missing image, a corrupt record, a record without its sheet,
	// and the temporary file of a write that was killed.
	os.WriteFile(filepath.Join(dir, "000001.png"), []byte("trunc"), 0o644)
	os.Remove(filepath.Join(dir, "000004.png"))
	os.WriteFile(recordPath(dir, "000007"), []byte(`{"id": "000007", `), 0o644)
	os.Remove(filepath.Join(dir, "000009.sheet.png"))
	os.WriteFile(filepath.Join(dir, ".000010.png.tmp-123"), []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(dir, ".other.png.tmp-9"), []byte("not ours"), 0o644)

	w = &fakeWork{settings: "a"}
	sum, err = runJob(t, dir, items(12), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(w.ids)
	if want := []string{"000001", "000004", "000007", "000009"}; !slices.Equal(w.ids, want) {
		t.Errorf("redid %v, want %v", w.ids, want)
	}
	if sum.Items.Redone != 4 || sum.Items.Skipped != 8 || sum.Items.Finished != 12 {
		t.Errorf("summary items %+v", sum.Items)
	}
	if _, err := os.Stat(filepath.Join(dir, ".000010.png.tmp-123")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the leftover temporary file of an item was not removed")
	}
	if _, err := os.Stat(filepath.Join(dir, ".other.png.tmp-9")); err != nil {
		t.Error("a temporary file that is not this job's was removed")
	}
	os.Remove(filepath.Join(dir, ".other.png.tmp-9"))
	sameTree(t, before, tree(t, dir))
}

func TestSameResultWhateverWorkersAndShards(t *testing.T) {
	its := items(23)
	one := t.TempDir()
	if _, err := runJob(t, one, its, &fakeWork{settings: "a", images: 2}, func(j *Job) { j.Workers = 1 }); err != nil {
		t.Fatal(err)
	}
	many := t.TempDir()
	if _, err := runJob(t, many, its, &fakeWork{settings: "a", images: 2}, func(j *Job) { j.Workers = 8 }); err != nil {
		t.Fatal(err)
	}
	sameTree(t, tree(t, one), tree(t, many))

	// Four shards in their own folders, one of them sharing the destination, merged.
	dest := t.TempDir()
	var srcs []string
	for i := range 4 {
		d := t.TempDir()
		if i == 2 {
			d = dest
		}
		srcs = append(srcs, d)
		sum, err := runJob(t, d, its, &fakeWork{settings: "a", images: 2}, func(j *Job) { j.Shard = Shard{i, 4} })
		if err != nil {
			t.Fatal(err)
		}
		if sum.Manifest != fmt.Sprintf("manifest.shard-%d-of-4.jsonl", i) || sum.Items.Shard != len(Shard{i, 4}.Select(its)) {
			t.Errorf("shard %d summary %+v", i, sum)
		}
	}
	ms, err := Merge(dest, srcs, false)
	if err != nil {
		t.Fatal(err)
	}
	if ms.Items != 23 || ms.Images != 46 || ms.Shards != 4 || ms.Total != 23 {
		t.Errorf("merge summary %+v", ms)
	}
	got := tree(t, dest)
	delete(got, "manifest.shard-2-of-4.jsonl") // shard 2 ran in dest itself
	sameTree(t, tree(t, one), got)

	// Merging again changes nothing and copies nothing.
	ms, err = Merge(dest, srcs, false)
	if err != nil || ms.Copied != 0 {
		t.Errorf("second merge: %+v, %v", ms, err)
	}
}

func TestMergeRefusesIncompleteOrConflictingShards(t *testing.T) {
	its := items(9)
	srcs := runShards(t, its, 3, "")
	if _, err := Merge(t.TempDir(), srcs[:2], false); err == nil || !strings.Contains(err.Error(), "shard 2/3 has no manifest") {
		t.Errorf("missing shard: %v", err)
	}
	if ms, err := Merge(t.TempDir(), srcs[:2], true); err != nil || ms.Items != 6 {
		t.Errorf("partial merge: %+v, %v", ms, err)
	}
	// A shard that failed an item is incomplete.
	d := t.TempDir()
	_, err := runJob(t, d, its, &fakeWork{settings: "a", fail: map[string]bool{"000001": true}}, func(j *Job) { j.Shard = Shard{1, 3}; j.MaxFailures = -1 })
	var fe *FailedError
	if !errors.As(err, &fe) {
		t.Fatalf("failing shard: %v", err)
	}
	if _, err := Merge(t.TempDir(), []string{srcs[0], d, srcs[2]}, false); err == nil || !strings.Contains(err.Error(), "finished 2 of its 3 items") {
		t.Errorf("incomplete shard: %v", err)
	}
	// Results of other settings conflict.
	other := t.TempDir()
	if _, err := runJob(t, other, its, &fakeWork{settings: "b"}, func(j *Job) { j.Shard = Shard{1, 3} }); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(t.TempDir(), []string{srcs[0], srcs[1], other, srcs[2]}, false); err == nil || !strings.Contains(err.Error(), "differs between") {
		t.Errorf("conflicting shards: %v", err)
	}
	// A corrupt file is caught while merging.
	os.WriteFile(filepath.Join(srcs[0], "000003.png"), []byte("bad"), 0o644)
	if _, err := Merge(t.TempDir(), srcs, false); err == nil || !strings.Contains(err.Error(), "does not match its record") {
		t.Errorf("corrupt source file: %v", err)
	}
	if _, err := Merge(t.TempDir(), []string{t.TempDir()}, false); err == nil || !strings.Contains(err.Error(), "holds no manifest") {
		t.Errorf("empty source: %v", err)
	}
}

func TestFailedItemsAreReportedAndRetried(t *testing.T) {
	dir := t.TempDir()
	w := &fakeWork{settings: "a", fail: map[string]bool{"000002": true, "000005": true}}
	sum, err := runJob(t, dir, items(8), w, func(j *Job) { j.MaxFailures = 10 })
	var fe *FailedError
	if !errors.As(err, &fe) || fe.Failed != 2 || fe.Stopped || fe.First.ID != "000002" || !strings.Contains(err.Error(), "run the same command again") {
		t.Fatalf("error %v", err)
	}
	if sum.Items.Finished != 6 || sum.Items.Failed != 2 || len(sum.Failures) != 2 {
		t.Errorf("summary items %+v failures %v", sum.Items, sum.Failures)
	}
	w = &fakeWork{settings: "a"}
	if _, err := runJob(t, dir, items(8), w, nil); err != nil {
		t.Fatal(err)
	}
	slices.Sort(w.ids)
	if !slices.Equal(w.ids, []string{"000002", "000005"}) {
		t.Errorf("retried %v", w.ids)
	}

	// With MaxFailures 0 the first failure stops the job.
	w = &fakeWork{settings: "a", fail: map[string]bool{"000000": true}}
	_, err = runJob(t, t.TempDir(), items(50), w, func(j *Job) { j.Workers = 1 })
	if !errors.As(err, &fe) || !fe.Stopped {
		t.Fatalf("error %v, want a stopped FailedError", err)
	}
	if n := w.rendered.Load(); n > 2 {
		t.Errorf("%d items rendered after the first failure stopped the job", n)
	}
}

func TestPrepareErrorsAndChangedSettings(t *testing.T) {
	dir := t.TempDir()
	its := items(4)
	its[2].Prompt = "bad"
	its[2].Line = 7
	if _, err := runJob(t, dir, its, &fakeWork{settings: "a"}, nil); err == nil || !strings.Contains(err.Error(), "item 000002 (line 7): bad prompt") {
		t.Errorf("prepare error %v", err)
	}
	its = items(4)
	if _, err := runJob(t, dir, its, &fakeWork{settings: "a", images: 3}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := runJob(t, dir, its, &fakeWork{settings: "b"}, nil)
	if err == nil || !strings.Contains(err.Error(), "made with other settings") || !strings.Contains(err.Error(), "--overwrite") {
		t.Errorf("changed settings: %v", err)
	}
	w := &fakeWork{settings: "b"}
	if _, err := runJob(t, dir, its, w, func(j *Job) { j.Overwrite = true }); err != nil || w.rendered.Load() != 4 {
		t.Fatalf("overwrite: %v, rendered %d", err, w.rendered.Load())
	}
	// The old three images per item are gone; the manifest lists exactly what is there.
	fresh := t.TempDir()
	if _, err := runJob(t, fresh, its, &fakeWork{settings: "b"}, nil); err != nil {
		t.Fatal(err)
	}
	sameTree(t, tree(t, fresh), tree(t, dir))
}

func TestInterruptKeepsFinishedItemsAndResumes(t *testing.T) {
	dir := t.TempDir()
	its := items(10)
	w := &fakeWork{settings: "a", block: map[string]bool{"000004": true}, started: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	var sum *Summary
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		sum, err = (&Job{Dir: dir, Items: its, Workers: 1, Prepare: w.prepare}).Run(ctx)
	}()
	<-w.started // item 4 is running: 0..3 are finished
	cancel()
	<-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if sum.Items.Finished != 4 || sum.Items.NotRun != 6 || sum.Items.Failed != 0 {
		t.Errorf("summary items %+v", sum.Items)
	}
	recs, err := ReadManifest(filepath.Join(dir, ManifestName))
	if err != nil || len(recs) != 4 {
		t.Fatalf("manifest after interrupt: %d rows, %v", len(recs), err)
	}
	w = &fakeWork{settings: "a"}
	if _, err := runJob(t, dir, its, w, nil); err != nil || w.rendered.Load() != 6 {
		t.Errorf("resume: %v, rendered %d, want 6", err, w.rendered.Load())
	}
}

func TestOneRunPerShardAndFolder(t *testing.T) {
	dir := t.TempDir()
	w := &fakeWork{settings: "a", block: map[string]bool{"000000": true}, started: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := (&Job{Dir: dir, Items: items(2), Prepare: w.prepare}).Run(ctx)
		done <- err
	}()
	<-w.started
	_, err := runJob(t, dir, items(2), &fakeWork{settings: "a"}, nil)
	if err == nil || !strings.Contains(err.Error(), "already running shard 0/1") {
		t.Errorf("second run: %v", err)
	}
	// Another shard may share the folder.
	if _, err := runJob(t, dir, items(2), &fakeWork{settings: "a"}, func(j *Job) { j.Shard = Shard{1, 2} }); err != nil {
		t.Errorf("a second shard in the same folder: %v", err)
	}
	cancel()
	<-done
}

func TestRewardStats(t *testing.T) {
	st := rewardStats([]float64{4, 1, 3, 2})
	want := RewardStats{Count: 4, Mean: 2.5, Std: 1.118033988749895, Min: 1, Median: 2.5, Max: 4}
	if *st != want {
		t.Errorf("rewardStats = %+v, want %+v", *st, want)
	}
	if rewardStats(nil) != nil {
		t.Error("no rewards should give nil stats")
	}
}

func TestManifestRoundTrip(t *testing.T) {
	r := 0.25
	recs := []*Record{
		{ID: "b", Index: 1, Prompt: `<"x">`, Seed: 1<<64 - 1, Fingerprint: "f", Files: []FileRecord{{Name: "b.png", Kind: KindImage, Reward: &r}}},
		{ID: "a", Index: 0, Prompt: "p", Overrides: map[string]any{"steps": 3}, Files: []FileRecord{{Name: "a.png"}}},
	}
	path := filepath.Join(t.TempDir(), "m.jsonl")
	if err := WriteManifest(path, recs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(path)
	if err != nil || len(got) != 2 || got[0].ID != "a" || got[1].Seed != 1<<64-1 || *got[1].Files[0].Reward != 0.25 || got[1].Prompt != `<"x">` {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte(`"prompt":"<\"x\">"`)) {
		t.Errorf("manifest escapes HTML: %s", data)
	}
}
