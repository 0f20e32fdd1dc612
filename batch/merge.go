package batch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/filehash"
	"github.com/fksteer/fksteer/internal/lockfile"
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
// (manifest.shard-I-of-N.jsonl) or a whole-job manifest; dest may itself be one of them, when
// the shards shared a folder. Every file is checked against its record's size and sha256, and
// copied atomically when it is not already in dest.
//
// Merge refuses, naming the fix, when the sources disagree about an item, name different shard
// counts, or lack a shard or some of a shard's items (by the shard summaries) — unless partial
// is set, in which case it merges what there is.
func Merge(dest string, sources []string, partial bool) (*MergeSummary, error) {
	if len(sources) == 0 {
		return nil, errors.New("merge needs at least one source folder")
	}
	if err := os.MkdirAll(recordsDir(dest), 0o755); err != nil {
		return nil, fmt.Errorf("output folder %s cannot be created: %w", dest, err)
	}
	lock, err := lockfile.TryLock(filepath.Join(dest, State, "lock"))
	if err != nil {
		if errors.Is(err, lockfile.ErrLocked) {
			return nil, fmt.Errorf("an unsharded fksteer batch or another merge is running in %s; wait for it", dest)
		}
		return nil, err
	}
	defer lock.Unlock()

	ms := &MergeSummary{Sources: sources, Manifest: ManifestName}
	type origin struct {
		rec  *Record
		dir  string
		data []byte
	}
	byID := map[string]origin{}
	seen := map[int]bool{} // shard indices found
	whole := false
	var problems []string
	for _, src := range sources {
		entries, err := os.ReadDir(src)
		if err != nil {
			return nil, fmt.Errorf("read source %s: %w", src, err)
		}
		found := false
		for _, e := range entries {
			name := e.Name()
			var shard Shard
			if m := shardManifest.FindStringSubmatch(name); m != nil {
				i, _ := strconv.Atoi(m[1])
				n, _ := strconv.Atoi(m[2])
				shard = Shard{Index: i, Count: n}
				if ms.Shards != 0 && ms.Shards != n {
					return nil, fmt.Errorf("%s is shard %d of %d, but other manifests name %d shards: merge the results of one job only", filepath.Join(src, name), i, n, ms.Shards)
				}
				ms.Shards = n
				seen[i] = true
			} else if name == ManifestName {
				if samePath(src, dest) {
					continue // a previous merge's output, rewritten below from the shards
				}
				shard, whole = Whole, true
			} else {
				continue
			}
			found = true
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
						return nil, fmt.Errorf("item %s differs between %s and %s (other settings or seeds?): merge the results of one job only", r.ID, prev.dir, src)
					}
					continue
				}
				byID[r.ID] = origin{rec: r, dir: src, data: data}
			}
		}
		if !found {
			return nil, fmt.Errorf("source %s holds no manifest (manifest.jsonl or manifest.shard-I-of-N.jsonl): is it a batch output folder, and did its run finish or stop cleanly?", src)
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
	if len(problems) > 0 && !partial {
		slices.Sort(problems)
		return nil, fmt.Errorf("the shards are incomplete: %s; or pass --partial to merge what there is", problems[0])
	}

	records := make([]*Record, 0, len(byID))
	for _, o := range byID {
		n, err := copyItem(o.dir, dest, o.rec, o.data)
		if err != nil {
			return nil, err
		}
		ms.Copied += n
		records = append(records, o.rec)
	}
	if err := WriteManifest(filepath.Join(dest, ManifestName), records); err != nil {
		return nil, err
	}
	ms.Items = len(records)
	ms.Images, ms.Reward = imageStats(records)
	if err := writeSummary(filepath.Join(dest, SummaryName), ms); err != nil {
		return nil, err
	}
	return ms, nil
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

// copyItem checks an item's files in src against its record, copies those not already in dest
// atomically, and writes the record; it returns how many files it copied.
func copyItem(src, dest string, rec *Record, data []byte) (int, error) {
	copied := 0
	same := samePath(src, dest)
	for _, f := range rec.Files {
		if !validName(rec.ID, f.Name) {
			return copied, fmt.Errorf("item %s in %s names an unexpected file %q", rec.ID, src, f.Name)
		}
		if !same {
			if sum, n, err := filehash.SHA256(filepath.Join(dest, f.Name)); err == nil && sum == f.SHA256 && n == f.Bytes {
				continue
			}
		}
		content, err := os.ReadFile(filepath.Join(src, f.Name))
		if err != nil {
			return copied, fmt.Errorf("item %s: %w (run its shard again to redo it)", rec.ID, err)
		}
		h := sha256.Sum256(content)
		if int64(len(content)) != f.Bytes || hex.EncodeToString(h[:]) != f.SHA256 {
			return copied, fmt.Errorf("item %s: %s does not match its record (corrupt): run its shard again, which redoes it", rec.ID, filepath.Join(src, f.Name))
		}
		if same {
			continue
		}
		if err := atomicfile.Write(filepath.Join(dest, f.Name), content, 0o644); err != nil {
			return copied, err
		}
		copied++
	}
	if old, err := os.ReadFile(recordPath(dest, rec.ID)); err == nil && bytes.Equal(old, data) {
		return copied, nil
	}
	return copied, atomicfile.Write(recordPath(dest, rec.ID), data, 0o644)
}

func samePath(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
