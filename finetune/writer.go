package finetune

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/filehash"
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
	// dataset refuses to replace it unless they are equal.
	Settings any
}

// Writer writes a whole dataset folder (layout in docs/datasets.md) from groups added in group
// order. Groups are buffered until their shard is full; committing a shard writes its images
// and references, then the shard, then rewrites manifest.jsonl, groups.jsonl, pairs.jsonl and
// dataset.json, each atomically, so that at every moment the manifest names only complete
// files and every file is whole. A shard rolls over by size alone, so the same groups in the
// same order give the same files byte for byte.
//
// Opened on a folder that holds a dataset of the same mode and settings, a Writer replaces it:
// files whose bytes do not change are not written again, and Finish or Close removes the
// shards, images and references the new manifest does not name. Resuming an interrupted export
// is not the Writer's business: [Export] keeps every finished group as a batch record (package
// batch) and assembles the dataset from them.
//
// A Writer is not safe for concurrent use. After an error it refuses further work.
type Writer struct {
	dir      string
	o        WriterOptions
	settings json.RawMessage

	// rows is the committed manifest and groups the committed groups; shards are the committed
	// shards, sizes their sizes and bytes their total.
	rows    []Row
	groups  map[string]bool
	shards  []string
	sizes   map[string]int64
	bytes   int64
	pending []pendingGroup
	err     error
}

// pendingGroup is a group ready to be written: its rows (shard not yet set), its tensors under
// their shard keys, the PNG of each sample (rows[k].Image) and the bytes of each reference
// image (rows[0].References[j]).
type pendingGroup struct {
	id      string
	rows    []Row
	tensors []Tensor
	images  [][]byte
	refs    [][]byte
}

// OpenWriter creates the dataset folder dir for writing, or opens the dataset in it to replace
// it. A dataset of another mode or settings is refused, naming what differs, and so is a folder
// that is not empty and holds no dataset.json, so that an export never mixes into unrelated
// files. Temporary files an interrupted write left are removed.
func OpenWriter(dir string, o WriterOptions) (*Writer, error) {
	var err error
	if o.Mode, err = ParseMode(string(o.Mode)); err != nil {
		return nil, err
	}
	if o.ShardSize <= 0 {
		o.ShardSize = DefaultShardSize
	}
	if o.Pairs == "" {
		o.Pairs = AllPairs
	}
	w := &Writer{dir: dir, o: o, groups: map[string]bool{}, sizes: map[string]int64{}}
	if o.Settings != nil {
		s, err := json.Marshal(o.Settings)
		if err != nil {
			return nil, fmt.Errorf("dataset settings: %w", err)
		}
		w.settings = s
	}
	if err := checkDataset(dir, o.Mode, w.settings); err != nil {
		return nil, err
	}
	for _, sub := range []string{ShardDir, ImageDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("dataset folder %s cannot be created: %w", dir, err)
		}
	}
	if err := w.removeLeftovers(false); err != nil {
		return nil, err
	}
	if err := w.writeInfo(false); err != nil {
		return nil, err
	}
	return w, nil
}

// checkDataset refuses to write a dataset of mode m with settings into dir when dir holds a
// dataset of another mode or other settings (nil settings are not compared), or holds other
// files and no dataset at all. A missing dir is fine.
func checkDataset(dir string, m Mode, settings json.RawMessage) error {
	info, err := readInfo(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return checkEmpty(dir)
	case err != nil:
		return err
	case info.Mode != m:
		return fmt.Errorf("dataset %s is a %s dataset, not %s: use a new folder or --mode %s", dir, info.Mode, m, info.Mode)
	case settings != nil && !sameJSON(info.Settings, settings):
		return fmt.Errorf("dataset %s was made with other settings (%s): resume it with the same ones, or use a new folder", dir, diffJSON(info.Settings, settings))
	}
	return nil
}

// checkEmpty refuses a folder with anything in it besides the empty subfolders OpenWriter makes,
// an export's work folder (batch.State) and temporary files (of an export killed before it
// wrote dataset.json, or of the CLI's check that the folder is writable).
func checkEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if isTemp(e.Name()) && !e.IsDir() || e.IsDir() && e.Name() == batch.State {
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

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// removeLeftovers deletes temporary files and, once the dataset is written (all), the shards
// the manifest does not name and the images and references of groups it does not hold: what an
// interrupted write or an earlier, different dataset in the folder left.
func (w *Writer) removeLeftovers(all bool) error {
	named := map[string]bool{}
	for _, rel := range w.shards {
		named[rel] = true
	}
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
			case !all:
			case sub == ShardDir:
				stale = !named[ShardDir+"/"+name]
			case sub == ImageDir || sub == RefDir:
				group, _, _ := strings.Cut(name, "-")
				stale = !w.groups[group]
			}
			if stale {
				if err := os.Remove(filepath.Join(w.dir, sub, name)); err != nil {
					return fmt.Errorf("remove what an earlier write left: %w", err)
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

// Has reports whether the group with this ID is committed to the dataset.
func (w *Writer) Has(groupID string) bool { return w.groups[groupID] }

// Add encodes g's images, reads its references (Adv-GRPO) and buffers them with its tensors and
// rows, committing the current shard first if g would not fit in it. Groups must come in group
// order, each once; an error leaves the dataset as it was before the call.
func (w *Writer) Add(g *Group) error {
	if w.err != nil {
		return w.err
	}
	pg, err := prepare(g, w.o.Mode, w.o.Half)
	if err != nil {
		return err
	}
	return w.add(pg)
}

// add buffers a prepared group, committing shards as they fill.
func (w *Writer) add(pg pendingGroup) error {
	if w.err != nil {
		return w.err
	}
	if w.groups[pg.id] || slices.ContainsFunc(w.pending, func(p pendingGroup) bool { return p.id == pg.id }) {
		return fmt.Errorf("group %s is already in dataset %s", pg.id, w.dir)
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

// prepare encodes g for a dataset of mode m: its tensors under their shard keys, its rows
// (shard not yet set), each sample's PNG and each reference image's bytes, with the sha256 the
// rows record.
func prepare(g *Group, m Mode, half bool) (pendingGroup, error) {
	pg := pendingGroup{id: g.ID}
	var refs, refSums []string
	for j, src := range g.References {
		data, err := os.ReadFile(src)
		if err != nil {
			return pg, fmt.Errorf("copy reference image: %w", err)
		}
		refs = append(refs, refPath(g.ID, j, src))
		refSums = append(refSums, sha256Hex(data))
		pg.refs = append(pg.refs, data)
	}
	keys := map[string]string{}
	for _, t := range g.Tensors(half) {
		keys[t.Name] = g.ID + "/" + t.Name
		t.Name = keys[t.Name]
		pg.tensors = append(pg.tensors, t)
	}
	for k, s := range g.Samples {
		data, err := encodePNG(g, k)
		if err != nil {
			return pg, err
		}
		r := row(g, m, k, filepath.ToSlash(filepath.Join(ImageDir, s.ID+".png")), keys, refs)
		r.ImageSHA256, r.ReferenceSHA256 = sha256Hex(data), refSums
		pg.rows = append(pg.rows, r)
		pg.images = append(pg.images, data)
	}
	return pg, nil
}

// refPath is where reference j of group id (read from src) is copied in a dataset.
func refPath(id string, j int, src string) string {
	return filepath.ToSlash(filepath.Join(RefDir, fmt.Sprintf("%s-%d%s", id, j, strings.ToLower(filepath.Ext(src)))))
}

// row builds sample k's manifest row (its shard is set on commit).
func row(g *Group, m Mode, k int, image string, keys map[string]string, refs []string) Row {
	s := g.Samples[k]
	r := Row{
		ID: s.ID, Mode: m, Prompt: g.Prompt, Seed: g.Seed, Slot: s.Slot, NoiseSlot: s.NoiseSlot,
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
		ids[i] = g.id
	}
	return map[string]string{
		"format": Format, "version": strconv.Itoa(FormatVersion), "mode": string(mode),
		"groups": strings.Join(ids, ","), "log_prob_convention": LogProbConvention,
	}
}

// Commit writes the buffered groups as one shard, with their images and references, and then
// the manifest, groups and pairs files. It does nothing when no group is buffered.
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
	for _, g := range w.pending {
		if err := w.writeFiles(g); err != nil {
			return err
		}
	}
	rel := fmt.Sprintf("%s/shard-%05d.safetensors", ShardDir, len(w.shards))
	rows, n, err := w.writeShard(rel, w.pending)
	if err != nil {
		return err
	}
	w.rows = append(w.rows, rows...)
	for _, g := range w.pending {
		w.groups[g.id] = true
	}
	w.pending = nil
	w.shards = append(w.shards, rel)
	w.sizes[rel] = n
	w.bytes += n
	return w.writeIndex()
}

// writeFiles writes g's images and references where its rows name them.
func (w *Writer) writeFiles(g pendingGroup) error {
	for k, data := range g.images {
		if err := writeIfChanged(filepath.Join(w.dir, filepath.FromSlash(g.rows[k].Image)), data); err != nil {
			return err
		}
	}
	for j, data := range g.refs {
		if err := writeIfChanged(filepath.Join(w.dir, filepath.FromSlash(g.rows[0].References[j])), data); err != nil {
			return fmt.Errorf("copy reference image: %w", err)
		}
	}
	return nil
}

// writeIfChanged writes data to path atomically unless the file holds exactly data already: a
// dataset written again over itself costs reads, not writes.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}

// writeShard writes groups as shard rel (unless the file holds those bytes already) and returns
// their rows, naming the shard and its sha256, and the shard's size.
func (w *Writer) writeShard(rel string, groups []pendingGroup) ([]Row, int64, error) {
	var ts []Tensor
	for _, g := range groups {
		ts = append(ts, g.tensors...)
	}
	meta := shardMetadata(groups, w.o.Mode)
	h := sha256.New()
	n, err := WriteSafetensors(h, ts, meta)
	if err != nil {
		return nil, 0, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	path := filepath.Join(w.dir, filepath.FromSlash(rel))
	if old, size, err := filehash.SHA256(path); err != nil || old != sum || size != n {
		err = atomicfile.WriteFunc(path, 0o644, func(f *os.File) error {
			bw := bufio.NewWriterSize(f, 1<<20)
			if _, err := WriteSafetensors(bw, ts, meta); err != nil {
				return err
			}
			return bw.Flush()
		})
		if err != nil {
			return nil, 0, err
		}
	}
	var rows []Row
	for _, g := range groups {
		for _, r := range g.rows {
			r.Shard, r.ShardSHA256 = rel, sum
			rows = append(rows, r)
		}
	}
	return rows, n, nil
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
		Groups: len(w.groups), Samples: len(w.rows), Shards: w.shards, Bytes: w.bytes,
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

// Finish commits the buffered groups, removes what the dataset no longer names and marks the
// dataset complete in dataset.json.
func (w *Writer) Finish() error { return w.close(true) }

// Close commits the buffered groups (every one of them is whole), removes what the dataset no
// longer names and updates dataset.json, leaving the dataset marked incomplete. Use it when an
// export stops early.
func (w *Writer) Close() error { return w.close(false) }

func (w *Writer) close(complete bool) error {
	if err := w.Commit(); err != nil {
		return err
	}
	if err := w.removeLeftovers(true); err != nil {
		return err
	}
	return w.writeInfo(complete)
}
