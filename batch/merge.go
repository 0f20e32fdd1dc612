package batch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/filehash"
)

// MergeSummary describes a merge of shards' results.
type MergeSummary struct {
	Sources []string `json:"sources"`
	// Shards is the shard count the sources' manifests name (1 for whole-job manifests).
	Shards int `json:"shards"`
	// Items counts the finished items merged; Total the items of the whole list, as the shards'
	// summaries report it (0 when none was found).
	Items  int          `json:"items"`
	Total  int          `json:"total,omitempty"`
	Images int          `json:"images"`
	Reward *RewardStats `json:"reward,omitempty"`
	// Copied counts the files copied into the destination (the rest were already there).
	Copied   int    `json:"copied"`
	Manifest string `json:"manifest"`
}

var shardManifest = regexp.MustCompile(`^manifest\.shard-(\d+)-of-(\d+)\.jsonl$`)

// Merge joins the results of a sharded job into dest as one unsharded run would have written
// them: every finished item's files and record, manifest.jsonl with every record in item order,
// and summary.json. Each source is an output folder holding shard manifests
// (manifest.shard-I-of-N.jsonl) or, failing those, a whole-job manifest; dest may itself be one
// of them, when the shards shared a folder. Every file is checked against its record's size and
// sha256, and copied atomically when it is not already in dest.
//
// Merge never loses or replaces finished outputs: the items of an earlier merge into dest that
// no source has are kept, and it refuses with a *ConflictError, naming the fix, to merge into a
// folder that holds an unsharded batch's results or files fksteer did not write, to merge a
// folder holding no shards into itself, or to mix items made with other settings or seeds
// (item by item, and by the job fingerprint of every record). It also refuses, with a plain
// error, when a shard or some of a shard's items are missing (by the shard summaries), unless
// partial is set, in which case it merges what there is.
//
// Merge checks everything before it writes anything: a refused merge leaves dest as it was,
// and one that fails while writing (a full disk) removes what it had added.
func Merge(dest string, sources []string, partial bool) (*MergeSummary, error) {
	if len(sources) == 0 {
		return nil, errors.New("merge needs at least one source folder")
	}
	st, err := openState(dest, "lock", fmt.Sprintf("an unsharded fksteer batch or another merge is running in %s; wait for it", dest))
	if err != nil {
		return nil, err
	}
	p, err := planMerge(dest, sources, partial)
	if err == nil {
		err = p.commit()
	}
	if err != nil {
		st.abandon() // a dest this merge created goes again
		return nil, err
	}
	st.release()
	return p.summary, nil
}

// origin is a record and the source folder it was read from.
type origin struct {
	rec  *Record
	dir  string
	data []byte // the record's one encoding
}

// copyPlan is a file to copy from a source into dest.
type copyPlan struct {
	src, dest, sha string
	bytes          int64
	// isNew reports that dest had no file of that name, so undoing the merge removes it.
	isNew bool
}

// mergePlan is everything a merge writes, worked out and checked before it writes anything.
type mergePlan struct {
	dest    string
	copies  []copyPlan
	records map[string][]byte // record files to write (new or repaired), by item ID
	rows    []*Record         // the manifest's rows
	summary *MergeSummary
}

func planMerge(dest string, sources []string, partial bool) (*mergePlan, error) {
	ms := &MergeSummary{Sources: sources, Manifest: ManifestName}
	byID := map[string]origin{}
	seen := map[int]bool{} // shard indices found
	whole := false
	var problems []string
	for _, src := range sources {
		entries, err := os.ReadDir(src)
		if err != nil {
			return nil, fmt.Errorf("read source %s: %w", src, err)
		}
		// A folder's shard manifests are its results; its manifest.jsonl, beside them, is an
		// earlier merge of them, which a shard run since may have outdated.
		var shards []string
		hasWhole := false
		for _, e := range entries {
			if shardManifest.MatchString(e.Name()) {
				shards = append(shards, e.Name())
			} else if e.Name() == ManifestName {
				hasWhole = true
			}
		}
		isDest := samePath(src, dest)
		switch {
		case isDest && len(shards) == 0:
			return nil, conflictf("merging %s into itself: it holds no shard manifests (manifest.shard-I-of-N.jsonl), so there is nothing to merge (its %s already lists its items); to join it with other results, merge them all into a new --out", src, ManifestName)
		case len(shards) == 0 && !hasWhole:
			return nil, fmt.Errorf("source %s holds no manifest (manifest.jsonl or manifest.shard-I-of-N.jsonl): is it a batch output folder, and did its run finish or stop cleanly?", src)
		case len(shards) == 0:
			shards, whole = []string{ManifestName}, true
		}
		for _, name := range shards {
			shard := Whole
			if m := shardManifest.FindStringSubmatch(name); m != nil {
				i, _ := strconv.Atoi(m[1])
				n, _ := strconv.Atoi(m[2])
				shard = Shard{Index: i, Count: n}
				if ms.Shards != 0 && ms.Shards != n {
					return nil, conflictf("%s is shard %d of %d, but other manifests name %d shards: merge the results of one job only", filepath.Join(src, name), i, n, ms.Shards)
				}
				ms.Shards = n
				seen[i] = true
			}
			recs, err := ReadManifest(filepath.Join(src, name))
			if err != nil {
				return nil, err
			}
			if p := shardProblem(src, shard, len(recs), &ms.Total); p != "" {
				problems = append(problems, p)
			}
			for _, r := range recs {
				data, err := encodeRecord(r)
				if err != nil {
					return nil, err
				}
				if prev, ok := byID[r.ID]; ok {
					if !bytes.Equal(prev.data, data) {
						return nil, conflictf("item %s differs between %s and %s (other settings or seeds?): merge the results of one job only", r.ID, prev.dir, src)
					}
					continue
				}
				byID[r.ID] = origin{rec: r, dir: src, data: data}
			}
		}
	}
	if whole && ms.Shards == 0 {
		ms.Shards = 1
	}
	if !whole {
		for i := range ms.Shards {
			if !seen[i] {
				problems = append(problems, fmt.Sprintf("shard %d/%d has no manifest in any source: run it", i, ms.Shards))
			}
		}
	}
	ids := slices.Collect(maps.Keys(byID))
	slices.SortFunc(ids, func(a, b string) int { return byID[a].rec.Index - byID[b].rec.Index })

	// What dest holds already: an earlier merge's manifest, whose items must survive, or the
	// results of an unsharded batch or files of a user's, which a merge must not replace.
	p := &mergePlan{dest: dest, records: map[string][]byte{}, summary: ms}
	earlier, err := destRows(dest, ids, byID)
	if err != nil {
		return nil, err
	}
	for _, r := range earlier {
		if _, ok := byID[r.ID]; ok {
			continue // a source has the item: its record is checked against dest's below
		}
		data, err := encodeRecord(r)
		if err != nil {
			return nil, err
		}
		if !sameBytes(recordPath(dest, r.ID), data) || verifyFiles(dest, r) != "" {
			problems = append(problems, fmt.Sprintf("item %s of the earlier merge in %s is missing, changed or corrupt, and no source has it: add the source that holds it", r.ID, dest))
			continue
		}
		p.rows = append(p.rows, r)
	}
	if err := sameJob(dest, ids, byID, p.rows); err != nil {
		return nil, err
	}
	if len(problems) > 0 && !partial {
		slices.Sort(problems)
		return nil, fmt.Errorf("the results are incomplete: %s; or pass --partial to merge what there is", problems[0])
	}

	for _, id := range ids {
		o := byID[id]
		if err := p.planItem(o); err != nil {
			return nil, err
		}
		p.rows = append(p.rows, o.rec)
	}
	ms.Items = len(p.rows)
	ms.Images, ms.Reward = imageStats(p.rows)
	return p, nil
}

// destRows returns the rows of an earlier merge's manifest in dest (nil when there is none),
// and refuses a dest whose manifest or summary a merge did not write: an unsharded batch's
// (rerunning that batch would rewrite its manifest without the merged items) or a user's.
func destRows(dest string, ids []string, byID map[string]origin) ([]*Record, error) {
	manPath := filepath.Join(dest, ManifestName)
	sumPath := filepath.Join(dest, SummaryName)
	writer, sumExists := summaryWriter(sumPath)
	_, err := os.Stat(manPath)
	manExists := err == nil
	switch {
	case writer == writerMerge && manExists:
		recs, err := ReadManifest(manPath)
		if err != nil {
			return nil, fmt.Errorf("%w: the earlier merge's manifest in %s is damaged; merge into a new --out", err, dest)
		}
		return recs, nil
	case writer == writerMerge:
		return nil, nil // a merge killed between its summary and its manifest
	case writer == "batch "+Whole.String():
		var own []*Record
		if manExists {
			own, _ = ReadManifest(manPath)
		}
		if err := sameJob(dest, ids, byID, own); err != nil {
			return nil, err
		}
		return nil, conflictf("%s holds the results of an unsharded batch (%s), which a merge would mix with others (and rerunning that batch would drop them again): merge into a new folder instead, e.g. fksteer batch merge --out NEW %s SOURCE...", dest, ManifestName, dest)
	case sumExists:
		return nil, conflictf("%s was not written by fksteer batch merge, and a merge would replace it: move it away, or merge into a new --out", sumPath)
	case manExists:
		return nil, conflictf("%s was not written by fksteer batch merge (there is no merge summary.json beside it), and a merge would replace it: move it away, or merge into a new --out", manPath)
	}
	return nil, nil
}

// sameJob refuses to merge records of different jobs: the sources' items and the rows already
// in dest must carry one job fingerprint (records without one are not compared).
func sameJob(dest string, ids []string, byID map[string]origin, rows []*Record) error {
	type where struct{ id, dir, fp string }
	var first *where
	check := func(r *Record, dir string) error {
		if r.JobFingerprint == "" {
			return nil
		}
		if first == nil {
			first = &where{r.ID, dir, r.JobFingerprint}
			return nil
		}
		if r.JobFingerprint != first.fp {
			return conflictf("item %s in %s and item %s in %s were made with different settings (job fingerprints %.12s and %.12s): merge the results of one job only, into a new --out", first.id, first.dir, r.ID, dir, first.fp, r.JobFingerprint)
		}
		return nil
	}
	for _, r := range rows {
		if err := check(r, dest); err != nil {
			return err
		}
	}
	for _, id := range ids {
		if err := check(byID[id].rec, byID[id].dir); err != nil {
			return err
		}
	}
	return nil
}

// planItem checks an item's files in its source against its record and plans the copies and
// the record dest lacks. dest's own record of the item, where there is one, must be the same:
// then dest's files of the item are fksteer's to repair; otherwise a file of the item's name
// that holds other bytes is someone else's, and the merge refuses.
func (p *mergePlan) planItem(o origin) error {
	rec := o.rec
	old, err := os.ReadFile(recordPath(p.dest, rec.ID))
	own := err == nil && bytes.Equal(old, o.data)
	switch {
	case err == nil && !own:
		return conflictf("item %s in %s was made with other settings or seeds than in %s: merge the results of one job only, into a new --out", rec.ID, p.dest, o.dir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("item %s: %w", rec.ID, err)
	case err != nil:
		p.records[rec.ID] = o.data
	}
	same := samePath(o.dir, p.dest)
	for _, f := range rec.Files {
		if !validName(rec.ID, f.Name) {
			return fmt.Errorf("item %s in %s names an unexpected file %q", rec.ID, o.dir, f.Name)
		}
		src := filepath.Join(o.dir, f.Name)
		sum, n, err := filehash.SHA256(src)
		if err != nil {
			return fmt.Errorf("item %s: %w (run its shard again to redo it)", rec.ID, err)
		}
		if n != f.Bytes || sum != f.SHA256 {
			return fmt.Errorf("item %s: %s does not match its record (corrupt): run its shard again, which redoes it", rec.ID, src)
		}
		if same {
			continue
		}
		dst := filepath.Join(p.dest, f.Name)
		dsum, dn, err := filehash.SHA256(dst)
		switch {
		case err == nil && dsum == f.SHA256 && dn == f.Bytes:
			continue // already there
		case errors.Is(err, fs.ErrNotExist):
			p.copies = append(p.copies, copyPlan{src: src, dest: dst, sha: f.SHA256, bytes: f.Bytes, isNew: true})
		case own:
			p.copies = append(p.copies, copyPlan{src: src, dest: dst, sha: f.SHA256, bytes: f.Bytes})
		default:
			return conflictf("%s is in the destination, but no record there says fksteer wrote it, and merging item %s would replace it: move it away, or merge into a new --out", dst, rec.ID)
		}
	}
	return nil
}

// commit writes the plan: the files, the records, then summary.json and manifest.jsonl (the
// summary first, so that a merge killed in between is still known as a merge's). If a write
// fails, it removes the files it added and puts the summary and manifest back.
func (p *mergePlan) commit() (err error) {
	var added []string
	restore := map[string][]byte{} // summary and manifest as they were; nil: absent
	defer func() {
		if err == nil {
			return
		}
		for _, f := range added {
			os.Remove(f)
		}
		for path, data := range restore {
			if data == nil {
				os.Remove(path)
			} else {
				atomicfile.Write(path, data, 0o644)
			}
		}
		err = fmt.Errorf("%w (the merge was undone: %s is as it was)", err, p.dest)
	}()
	for _, c := range p.copies {
		content, err := os.ReadFile(c.src)
		if err != nil {
			return err
		}
		h := sha256.Sum256(content)
		if int64(len(content)) != c.bytes || hex.EncodeToString(h[:]) != c.sha {
			return fmt.Errorf("%s changed while it was merged: run the merge again", c.src)
		}
		if err := writeFile(c.dest, content); err != nil {
			return err
		}
		if c.isNew {
			added = append(added, c.dest)
		}
		p.summary.Copied++
	}
	for _, id := range slices.Sorted(maps.Keys(p.records)) {
		path := recordPath(p.dest, id)
		if err := writeFile(path, p.records[id]); err != nil {
			return err
		}
		added = append(added, path)
	}
	for _, name := range []string{SummaryName, ManifestName} {
		path := filepath.Join(p.dest, name)
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		restore[path] = old
	}
	if err := writeSummary(filepath.Join(p.dest, SummaryName), p.summary); err != nil {
		return err
	}
	return WriteManifest(filepath.Join(p.dest, ManifestName), p.rows)
}

// shardProblem reads a shard's summary, adds its list size to total, and says what is missing
// from the shard, if anything. A shard without a summary is taken at its manifest's word.
func shardProblem(dir string, s Shard, records int, total *int) string {
	data, err := os.ReadFile(filepath.Join(dir, SummaryFile(s)))
	if err != nil {
		return ""
	}
	var sum Summary
	if json.Unmarshal(data, &sum) != nil {
		return ""
	}
	*total = max(*total, sum.Items.Total)
	if sum.Items.Finished < sum.Items.Shard || records < sum.Items.Shard {
		return fmt.Sprintf("shard %s in %s finished %d of its %d items: run it again (it resumes)", s, dir, min(records, sum.Items.Finished), sum.Items.Shard)
	}
	return ""
}

func samePath(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
