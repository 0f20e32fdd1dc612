package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/internal/atomicfile"
)

// Record describes one finished item: what it was and the files it produced. It is the item's
// row in the results manifest and, stored alone, the proof that the item is finished. It holds
// nothing that depends on when, where or how fast the item ran, so equal work gives equal bytes.
type Record struct {
	ID             string         `json:"id"`
	Index          int            `json:"index"`
	Prompt         string         `json:"prompt"`
	NegativePrompt string         `json:"negative_prompt,omitempty"`
	Seed           uint64         `json:"seed"`
	Overrides      map[string]any `json:"overrides,omitempty"`
	References     []string       `json:"references,omitempty"`
	// Fingerprint identifies the settings the item was made with (see [Task]), and
	// JobFingerprint those of its job (see [Job]).
	Fingerprint    string       `json:"fingerprint"`
	JobFingerprint string       `json:"job_fingerprint,omitempty"`
	Files          []FileRecord `json:"files"`
}

// FileRecord is one file of a finished item.
type FileRecord struct {
	// Name is the file's name inside the output folder.
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	// Seed and Particle identify an image's sample; Reward is its final reward, when there was one.
	Seed     uint64   `json:"seed,omitempty"`
	Particle int      `json:"particle,omitempty"`
	Reward   *float64 `json:"reward,omitempty"`
}

// State is the hidden folder inside an output folder where a job keeps item records and locks.
const State = ".fksteer-batch"

func recordsDir(dir string) string { return filepath.Join(dir, State, "items") }

func recordPath(dir, id string) string { return filepath.Join(recordsDir(dir), id+".json") }

// encodeRecord is the one encoding of a record, used for record files and manifest rows alike.
func encodeRecord(r *Record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encode the record of item %s: %w", r.ID, err)
	}
	return buf.Bytes(), nil
}

func writeRecord(dir string, r *Record) error {
	data, err := encodeRecord(r)
	if err != nil {
		return err
	}
	return writeFile(recordPath(dir, r.ID), data)
}

// ReadRecord reads the record of item id in the output folder dir: what the item was made from
// and the files it produced (whether they are still intact is Job.Run's to check). An item
// without a record gives an error for which errors.Is(err, os.ErrNotExist) holds; an unreadable
// one another error.
func ReadRecord(dir, id string) (*Record, error) { return readRecord(dir, id) }

func readRecord(dir, id string) (*Record, error) {
	data, err := os.ReadFile(recordPath(dir, id))
	if err != nil {
		return nil, err
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("record %s is not valid JSON: %w", recordPath(dir, id), err)
	}
	if r.ID != id {
		return nil, fmt.Errorf("record %s names item %q", recordPath(dir, id), r.ID)
	}
	return &r, nil
}

// ManifestName is the results manifest of a whole job, or of a merge of shards.
const ManifestName = "manifest.jsonl"

// SummaryName is the summary of a whole job, or of a merge of shards.
const SummaryName = "summary.json"

// ManifestFile is the manifest name of a shard: manifest.jsonl for the whole job,
// manifest.shard-2-of-4.jsonl for shard 2 of 4, so shards can share one output folder.
func ManifestFile(s Shard) string { return "manifest" + s.suffix() + ".jsonl" }

// SummaryFile is the summary name of a shard, as [ManifestFile].
func SummaryFile(s Shard) string { return "summary" + s.suffix() + ".json" }

// WriteManifest writes records, ordered by index, as JSONL to path atomically.
func WriteManifest(path string, records []*Record) error {
	recs := slices.Clone(records)
	slices.SortFunc(recs, func(a, b *Record) int { return a.Index - b.Index })
	return writeError(path, atomicfile.WriteFunc(path, 0o644, func(f *os.File) error {
		w := bufio.NewWriter(f)
		for _, r := range recs {
			data, err := encodeRecord(r)
			if err != nil {
				return err
			}
			if _, err := w.Write(data); err != nil {
				return err
			}
		}
		return w.Flush()
	}))
}

// ReadManifest reads a results manifest written by [WriteManifest].
func ReadManifest(path string) ([]*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	recs, err := readManifest(f)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return recs, nil
}

func readManifest(r io.Reader) ([]*Record, error) {
	var out []*Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64*1024*1024)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var rec Record
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, &rec)
	}
	return out, sc.Err()
}
