package finetune

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/sampler"
)

// DefaultShardSize is the size at which shards roll over when WriterOptions leave it unset. A
// Writer holds up to one shard in memory.
const DefaultShardSize int64 = 256 << 20

// WriterOptions configure a [Writer].
type WriterOptions struct {
	Mode Mode
	// Half stores the state stack (latents) as float16, halving the largest tensor. Means, stds
	// and log-probabilities stay float32; log-probabilities recomputed from float16 states are
	// then only approximate.
	Half bool
	// ShardSize is the size in bytes at which a shard is closed and the next one begun: a shard
	// holds whole groups and exceeds the size only when one group alone does. The groups of the
	// shard being filled are held in memory. 0 means DefaultShardSize.
	ShardSize int64
	// Pairs and TieTolerance shape pairs.jsonl (pair modes only); Pairs defaults to AllPairs.
	Pairs        PairPolicy
	TieTolerance float64
	// GlobalStd normalises GRPO advantages by the standard deviation of all rewards in the
	// dataset instead of each group's (Flow-GRPO's global_std). Such advantages change as groups
	// are added: they are final when the dataset is complete.
	GlobalStd bool
	// Settings, if set, are recorded in dataset.json (as JSON); a Writer opened on an existing
	// dataset refuses to add to it unless they are equal.
	Settings any
}

// Writer writes groups into a dataset folder (layout in docs/datasets.md). Groups are buffered
// until their shard is full; committing a shard writes it, then rewrites manifest.jsonl,
// groups.jsonl and pairs.jsonl, each atomically, so that at every moment the manifest names only
// complete shards and every file is whole. Images are written when a group is added.
//
// Opening a Writer on a folder that holds a dataset resumes it: groups the manifest names are
// kept ([Writer.Has] reports them), and files an interrupted run left behind (shards the
// manifest does not name, images of uncommitted groups, temporary files) are removed.
//
// A Writer is not safe for concurrent use. After an error it refuses further work.
type Writer struct {
	dir      string
	o        WriterOptions
	settings json.RawMessage

	rows    []Row
	done    map[string]bool
	shards  []string
	next    int
	bytes   int64
	pending []pendingGroup
	err     error
}

// pendingGroup is an added group waiting for its shard: its rows (shard not yet set) and its
// tensors under their shard keys.
type pendingGroup struct {
	rows    []Row
	tensors []Tensor
	refs    []string
}

// OpenWriter creates the dataset folder dir (or resumes the dataset in it) for writing. A folder
// that exists, is not empty and holds no dataset.json is refused, so that an export never mixes
// into unrelated files.
func OpenWriter(dir string, o WriterOptions) (*Writer, error) {
	if _, err := ParseMode(string(o.Mode)); err != nil {
		return nil, err
	}
	if o.ShardSize <= 0 {
		o.ShardSize = DefaultShardSize
	}
	if o.Pairs == "" {
		o.Pairs = AllPairs
	}
	w := &Writer{dir: dir, o: o, done: map[string]bool{}}
	if o.Settings != nil {
		s, err := json.Marshal(o.Settings)
		if err != nil {
			return nil, fmt.Errorf("dataset settings: %w", err)
		}
		w.settings = s
	}
	for _, sub := range []string{ShardDir, ImageDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("dataset folder %s cannot be created: %w", dir, err)
		}
	}
	info, err := readInfo(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := checkEmpty(dir); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		if err := w.resume(info); err != nil {
			return nil, err
		}
	}
	if err := w.writeInfo(false); err != nil {
		return nil, err
	}
	return w, nil
}

// checkEmpty refuses a folder with anything in it besides the empty subfolders OpenWriter makes
// and temporary files (of an export killed before it wrote dataset.json, or of the CLI's check
// that the folder is writable).
func checkEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if isTemp(e.Name()) && !e.IsDir() {
			continue
		}
		if e.IsDir() && (e.Name() == ShardDir || e.Name() == ImageDir || e.Name() == RefDir) {
			sub, err := os.ReadDir(filepath.Join(dir, e.Name()))
			if err == nil && len(sub) == 0 {
				continue
			}
		}
		return fmt.Errorf("folder %s is not empty and holds no %s: choose a new or empty folder for the dataset", dir, InfoFile)
	}
	return nil
}

func readInfo(dir string) (*DatasetInfo, error) {
	data, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return nil, err
	}
	var info DatasetInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, InfoFile), err)
	}
	if info.Format != Format {
		return nil, fmt.Errorf("%s is not a %s dataset description", filepath.Join(dir, InfoFile), Format)
	}
	if info.Version != FormatVersion {
		return nil, fmt.Errorf("dataset %s has layout version %d; this fksteer writes version %d: use a new folder", dir, info.Version, FormatVersion)
	}
	return &info, nil
}

// resume loads the committed part of an existing dataset and clears what an interrupted run left.
func (w *Writer) resume(info *DatasetInfo) error {
	if info.Mode != w.o.Mode {
		return fmt.Errorf("dataset %s is a %s dataset, not %s: use a new folder or --mode %s", w.dir, info.Mode, w.o.Mode, info.Mode)
	}
	if w.settings != nil && !sameJSON(info.Settings, w.settings) {
		return fmt.Errorf("dataset %s was made with other settings (%s): resume it with the same ones, or use a new folder", w.dir, diffJSON(info.Settings, w.settings))
	}
	rows, err := ReadManifest(w.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	w.rows = rows
	named := map[string]bool{}
	for _, r := range rows {
		w.done[r.Group] = true
		if !named[r.Shard] {
			named[r.Shard] = true
			w.shards = append(w.shards, r.Shard)
			st, err := os.Stat(filepath.Join(w.dir, r.Shard))
			if err != nil {
				return fmt.Errorf("dataset %s: the manifest names shard %s, which is unreadable (%v): the folder was damaged outside fksteer; start a new one", w.dir, r.Shard, err)
			}
			w.bytes += st.Size()
			if n, ok := shardNumber(filepath.Base(r.Shard)); ok {
				w.next = max(w.next, n+1)
			}
		}
	}
	return w.removeLeftovers(named)
}

// removeLeftovers deletes shards the manifest does not name, images and references of groups it
// does not hold, and temporary files, all of which an interrupted run may leave.
func (w *Writer) removeLeftovers(named map[string]bool) error {
	for _, sub := range []string{".", ShardDir, ImageDir, RefDir} {
		entries, err := os.ReadDir(filepath.Join(w.dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			stale := false
			switch {
			case e.IsDir():
			case isTemp(name):
				stale = true
			case sub == ShardDir:
				stale = !named[ShardDir+"/"+name]
			case sub == ImageDir || sub == RefDir:
				group, _, _ := strings.Cut(name, "-")
				stale = !w.done[group]
			}
			if stale {
				if err := os.Remove(filepath.Join(w.dir, sub, name)); err != nil {
					return fmt.Errorf("remove what an interrupted export left: %w", err)
				}
			}
		}
	}
	return nil
}

// isTemp reports names of temporary files: atomicfile's (".NAME.tmp-*") and the CLI's
// writability probe (".fksteer-write-test-*").
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && (strings.Contains(name, ".tmp-") || strings.HasPrefix(name, ".fksteer-write-test-"))
}

func shardNumber(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "shard-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(s, ".safetensors"))
	return n, err == nil
}

// sameJSON compares two JSON documents by value.
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// diffJSON names the first top-level key whose value differs between two JSON objects.
func diffJSON(was, now json.RawMessage) string {
	var a, b map[string]any
	if json.Unmarshal(was, &a) != nil || json.Unmarshal(now, &b) != nil {
		return "settings are not comparable"
	}
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		x, _ := json.Marshal(a[k])
		y, _ := json.Marshal(b[k])
		if !bytes.Equal(x, y) {
			return fmt.Sprintf("%s was %s, now %s", k, x, y)
		}
	}
	return "no difference found"
}

// Has reports whether the group with this ID is already committed to the dataset.
func (w *Writer) Has(groupID string) bool { return w.done[groupID] }

// Add writes g's images and buffers its tensors and rows, committing the current shard first if g
// would not fit in it. g's references (Adv-GRPO) are copied into the dataset.
func (w *Writer) Add(g *Group) error {
	if w.err != nil {
		return w.err
	}
	if w.done[g.ID] || slices.ContainsFunc(w.pending, func(p pendingGroup) bool { return len(p.rows) > 0 && p.rows[0].Group == g.ID }) {
		return fmt.Errorf("group %s is already in dataset %s", g.ID, w.dir)
	}
	var pg pendingGroup
	for j, src := range g.References {
		rel := filepath.ToSlash(filepath.Join(RefDir, fmt.Sprintf("%s-%d%s", g.ID, j, strings.ToLower(filepath.Ext(src)))))
		if err := copyFile(filepath.Join(w.dir, rel), src); err != nil {
			return fmt.Errorf("copy reference image: %w", err)
		}
		pg.refs = append(pg.refs, rel)
	}
	for _, t := range g.Tensors(w.o.Half) {
		t.Name = g.ID + "/" + t.Name
		pg.tensors = append(pg.tensors, t)
	}
	keys := map[string]string{}
	for _, t := range pg.tensors {
		keys[strings.TrimPrefix(t.Name, g.ID+"/")] = t.Name
	}
	for k, s := range g.Samples {
		rel := filepath.ToSlash(filepath.Join(ImageDir, s.ID+".png"))
		if err := writePNG(filepath.Join(w.dir, rel), g, k); err != nil {
			return err
		}
		pg.rows = append(pg.rows, w.row(g, k, rel, keys, pg.refs))
	}
	if len(w.pending) > 0 {
		size, err := w.shardSize(append(slices.Clone(w.pending), pg))
		if err != nil {
			return err
		}
		if size > w.o.ShardSize {
			if err := w.Commit(); err != nil {
				return err
			}
		}
	}
	w.pending = append(w.pending, pg)
	if size, err := w.shardSize(w.pending); err != nil || size >= w.o.ShardSize {
		if err != nil {
			return err
		}
		return w.Commit()
	}
	return nil
}

// row builds sample k's manifest row (its shard is set on commit).
func (w *Writer) row(g *Group, k int, image string, keys map[string]string, refs []string) Row {
	s := g.Samples[k]
	r := Row{
		ID: s.ID, Mode: w.o.Mode, Prompt: g.Prompt, Seed: g.Seed, Slot: s.Slot, NoiseSlot: s.NoiseSlot,
		Group: g.ID, Image: image, Reward: Float(s.Reward), Rewards: map[string]Float{},
		Advantage: Float(math.NaN()), Genealogy: s.Genealogy, ParentIDs: s.ParentIDs,
		Tensors: keys, Index: k, Model: g.Info.Name, ModelHash: g.Info.Hash, Scheduler: g.Scheduler,
		LogProbConvention: LogProbConvention, References: refs,
	}
	if g.Cond.Kind == pipelines.ClassCond {
		c := g.Cond.Class
		r.Class = &c
	}
	r.RewardWeights = map[string]float64{}
	for _, v := range s.Rewards {
		r.Rewards[v.Name] = Float(v.Score)
		r.RewardWeights[v.Name] = v.Weight
		if v.HasText {
			if r.RewardTexts == nil {
				r.RewardTexts = map[string]string{}
			}
			r.RewardTexts[v.Name] = v.Text
		}
	}
	if g.Scheduler.Method == sampler.FK {
		lw := Float(s.LogWeight)
		r.LogWeight = &lw
	}
	if r.Genealogy == nil {
		r.Genealogy = [][2]int{}
	}
	if r.ParentIDs == nil {
		r.ParentIDs = []string{}
	}
	return r
}

// shardSize is the exact size of a shard holding groups.
func (w *Writer) shardSize(groups []pendingGroup) (int64, error) {
	var ts []Tensor
	for _, g := range groups {
		ts = append(ts, g.tensors...)
	}
	return SafetensorsSize(ts, shardMetadata(groups, w.o.Mode))
}

func shardMetadata(groups []pendingGroup, mode Mode) map[string]string {
	ids := make([]string, len(groups))
	for i, g := range groups {
		ids[i] = g.rows[0].Group
	}
	return map[string]string{
		"format": Format, "version": strconv.Itoa(FormatVersion), "mode": string(mode),
		"groups": strings.Join(ids, ","), "log_prob_convention": LogProbConvention,
	}
}

// Commit writes the buffered groups as one shard and then the manifest, groups and pairs files.
// It does nothing when no group is buffered.
func (w *Writer) Commit() error {
	if w.err != nil {
		return w.err
	}
	if len(w.pending) == 0 {
		return nil
	}
	w.err = w.commit()
	return w.err
}

func (w *Writer) commit() error {
	rel := fmt.Sprintf("%s/shard-%05d.safetensors", ShardDir, w.next)
	var ts []Tensor
	for _, g := range w.pending {
		ts = append(ts, g.tensors...)
	}
	meta := shardMetadata(w.pending, w.o.Mode)
	var n int64
	err := atomicfile.WriteFunc(filepath.Join(w.dir, rel), 0o644, func(f *os.File) error {
		bw := bufio.NewWriterSize(f, 1<<20)
		var err error
		if n, err = WriteSafetensors(bw, ts, meta); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return err
	}
	for _, g := range w.pending {
		for _, r := range g.rows {
			r.Shard = rel
			w.rows = append(w.rows, r)
		}
		w.done[g.rows[0].Group] = true
	}
	w.pending = nil
	w.shards = append(w.shards, rel)
	w.next++
	w.bytes += n
	return w.writeIndex()
}

// writeIndex recomputes the advantages over every committed row and rewrites manifest.jsonl, then
// groups.jsonl, pairs.jsonl and dataset.json's counts, which are derived from it: if a kill lands
// between the writes, the derived files lag the manifest, never lead it, and the next commit or
// resume rewrites them. The manifest is the authority on what the dataset holds.
func (w *Writer) writeIndex() error {
	if eps, ok := w.o.Mode.advantage(); ok {
		rs := make([]float64, len(w.rows))
		keys := make([]string, len(w.rows))
		for i, r := range w.rows {
			rs[i] = float64(r.Reward)
			keys[i] = r.Group
			if w.o.Mode == DDPO {
				// DDPO's stat tracker pools every sample of the same prompt.
				keys[i] = r.Prompt
				if r.Class != nil {
					keys[i] += "\x00" + strconv.FormatInt(*r.Class, 10)
				}
			}
		}
		for i, a := range advantages(rs, keys, eps, w.o.GlobalStd && w.o.Mode != DDPO) {
			w.rows[i].Advantage = Float(a)
		}
	}
	if err := writeJSONL(filepath.Join(w.dir, ManifestFile), w.rows); err != nil {
		return err
	}
	groups, pairs := w.derived()
	if err := writeJSONL(filepath.Join(w.dir, GroupsFile), groups); err != nil {
		return err
	}
	if w.o.Mode.Pairs() {
		if err := writeJSONL(filepath.Join(w.dir, PairsFile), pairs); err != nil {
			return err
		}
	}
	return w.writeInfo(false)
}

// derived builds groups.jsonl and pairs.jsonl from the committed rows.
func (w *Writer) derived() ([]GroupRow, []Pair) {
	var groups []GroupRow
	var pairs []Pair
	for i := 0; i < len(w.rows); {
		j := i
		for j < len(w.rows) && w.rows[j].Group == w.rows[i].Group {
			j++
		}
		rows := w.rows[i:j]
		g := GroupRow{Group: rows[0].Group, Prompt: rows[0].Prompt, Seed: rows[0].Seed, Shard: rows[0].Shard, References: rows[0].References}
		ids := make([]string, len(rows))
		rs := make([]float64, len(rows))
		for k, r := range rows {
			ids[k], rs[k] = r.ID, float64(r.Reward)
			g.Samples = append(g.Samples, r.ID)
			g.Rewards = append(g.Rewards, r.Reward)
			g.Advantages = append(g.Advantages, r.Advantage)
		}
		mean, std := stats(rs)
		g.Mean, g.Std = Float(mean), Float(std)
		groups = append(groups, g)
		if w.o.Mode.Pairs() {
			pairs = append(pairs, pairsOf(g.Group, g.Prompt, ids, rs, w.o.Pairs, w.o.TieTolerance)...)
		}
		i = j
	}
	return groups, pairs
}

// writeInfo rewrites dataset.json with the committed counts.
func (w *Writer) writeInfo(complete bool) error {
	info := DatasetInfo{
		Format: Format, Version: FormatVersion, Mode: w.o.Mode, Complete: complete,
		Groups: len(w.done), Samples: len(w.rows), Shards: w.shards, Bytes: w.bytes,
		LogProbConvention: LogProbConvention, Settings: w.settings,
	}
	if info.Shards == nil {
		info.Shards = []string{}
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(w.dir, InfoFile), append(data, '\n'), 0o644)
}

// Rows returns the committed manifest rows (shared; do not modify).
func (w *Writer) Rows() []Row { return w.rows }

// Bytes returns the total size of the committed shards.
func (w *Writer) Bytes() int64 { return w.bytes }

// Shards returns the committed shards, relative to the dataset folder.
func (w *Writer) Shards() []string { return w.shards }

// Finish commits the buffered groups and marks the dataset complete in dataset.json.
func (w *Writer) Finish() error {
	if err := w.Commit(); err != nil {
		return err
	}
	return w.writeInfo(true)
}

// Close commits the buffered groups (every one of them is whole) and updates dataset.json,
// leaving the dataset marked incomplete unless Finish was called. Use it when an export stops
// early; the next Writer on the folder resumes.
func (w *Writer) Close() error {
	if err := w.Commit(); err != nil {
		return err
	}
	info, err := readInfo(w.dir)
	if err == nil && info.Complete && info.Samples == len(w.rows) {
		return nil
	}
	return w.writeInfo(false)
}

// copyFile copies src to dst atomically.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFunc(dst, 0o644, func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	})
}
