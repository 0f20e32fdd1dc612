package finetune

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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
// kept ([Writer.Has] reports them) when their shard, images and references still have the
// sha256 the manifest recorded, and files an interrupted run left behind (shards the manifest
// does not name, images of uncommitted groups, temporary files) are removed. Groups whose files
// are missing or damaged are not kept: adding them again repairs the dataset ([Writer.Repairs]).
//
// Shards are laid out by group order alone, so that a resumed dataset's files equal an
// uninterrupted run's byte for byte: the last shard of a resumed dataset (which an interrupted
// run commits early) is read back and filled with the groups added next as if the run had not
// stopped, and a damaged shard before it is rewritten under its own name with the groups it
// held once they are all added again.
//
// A Writer is not safe for concurrent use. After an error it refuses further work.
type Writer struct {
	dir      string
	o        WriterOptions
	settings json.RawMessage

	// rows is the manifest: the committed rows, and the recorded rows of holes until they are
	// rewritten. done holds the groups whose files are committed and intact.
	rows []Row
	done map[string]bool
	// shards are the shards the manifest names, sizes their sizes and bytes their total.
	shards  []string
	sizes   map[string]int64
	next    int
	bytes   int64
	pending []pendingGroup
	// reopened is the resumed dataset's last shard, whose reopenedGroups groups lead pending:
	// the groups added next join them as they would have joined them in an uninterrupted run.
	reopened       string
	reopenedGroups int
	// holes are the damaged shards before the last, by name; holeOf maps each of their groups
	// to its shard.
	holes   map[string]*hole
	holeOf  map[string]string
	repairs []string
	err     error
}

// hole is a damaged shard being redone: the groups it held, in order, and those added again.
type hole struct {
	groups  []string
	pending []pendingGroup
}

// pendingGroup is an added group waiting for its shard: its rows (shard not yet set) and its
// tensors under their shard keys.
type pendingGroup struct {
	rows          []Row
	tensors       []Tensor
	refs, refSums []string
}

// OpenWriter creates the dataset folder dir (or resumes the dataset in it) for writing. A folder
// that exists, is not empty and holds no dataset.json is refused, so that an export never mixes
// into unrelated files.
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
	w := &Writer{dir: dir, o: o, done: map[string]bool{}, sizes: map[string]int64{}, holes: map[string]*hole{}, holeOf: map[string]string{}}
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

// resume loads the committed part of an existing dataset, checks every file the manifest names
// against its recorded sha256, and clears what an interrupted run left. A damaged or missing
// file is not an error: its group is redone (see [Writer]), and Repairs says what was found.
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
	var order []string
	byShard := map[string][]Row{}
	for _, r := range rows {
		if _, ok := byShard[r.Shard]; !ok {
			order = append(order, r.Shard)
		}
		byShard[r.Shard] = append(byShard[r.Shard], r)
	}
	for i, rel := range order {
		n, numbered := shardNumber(filepath.Base(rel))
		if numbered {
			w.next = max(w.next, n+1)
		}
		st, size, damage := w.check(rel, byShard[rel])
		last := i == len(order)-1 && numbered
		if damage != "" {
			w.repairs = append(w.repairs, rel+": "+damage)
		}
		switch {
		case damage == "":
			w.addShard(rel, size)
			for _, r := range byShard[rel] {
				w.done[r.Group] = true
			}
			if last {
				w.reopen(rel, st, byShard[rel])
				w.next = n
			}
		case last:
			// Its groups are sampled again and fill this shard from its start, as they did.
			w.rows = slices.DeleteFunc(w.rows, func(r Row) bool { return r.Shard == rel })
			w.next = n
		default:
			h := &hole{}
			for _, r := range byShard[rel] {
				if !slices.Contains(h.groups, r.Group) {
					h.groups = append(h.groups, r.Group)
					w.holeOf[r.Group] = rel
				}
			}
			w.holes[rel] = h
			w.addShard(rel, size)
		}
	}
	named := map[string]bool{}
	for _, rel := range w.shards {
		named[rel] = true
	}
	return w.removeLeftovers(named)
}

// check reads shard rel and the files of its rows and returns the parsed shard, its size, and
// what is wrong ("" when nothing is): a missing file, a sha256 that differs from the one
// recorded, or a shard that does not parse or lacks a tensor its rows name (for datasets that
// recorded no sha256).
func (w *Writer) check(rel string, rows []Row) (*Safetensors, int64, string) {
	data, err := os.ReadFile(filepath.Join(w.dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, 0, "the shard is missing or unreadable"
	}
	size := int64(len(data))
	if want := rows[0].ShardSHA256; want != "" && sha256Hex(data) != want {
		return nil, size, "the shard's sha256 differs from the manifest's (truncated or altered)"
	}
	st, err := ParseSafetensors(data)
	if err != nil {
		return nil, size, "the shard does not parse: " + err.Error()
	}
	for _, r := range rows {
		for _, key := range r.Tensors {
			if _, ok := st.Tensor(key); !ok {
				return nil, size, fmt.Sprintf("the shard lacks tensor %s", key)
			}
		}
		if problem := checkFile(w.dir, r.Image, r.ImageSHA256); problem != "" {
			return nil, size, problem
		}
		for j, ref := range r.References {
			sum := ""
			if j < len(r.ReferenceSHA256) {
				sum = r.ReferenceSHA256[j]
			}
			if problem := checkFile(w.dir, ref, sum); problem != "" {
				return nil, size, problem
			}
		}
	}
	return st, size, ""
}

// checkFile says what is wrong with the dataset file rel ("" when nothing is): missing, or a
// sha256 other than want (when want is recorded).
func checkFile(dir, rel, want string) string {
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	switch {
	case err != nil:
		return rel + " is missing or unreadable"
	case want != "" && sha256Hex(data) != want:
		return rel + "'s sha256 differs from the manifest's (truncated or altered)"
	}
	return ""
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// reopen reads the groups of the resumed dataset's last shard back into pending, with their
// tensors in file order: WriteSafetensors orders a shard's tensors stably by element size, so
// writing them again, with or without the groups added next, gives the bytes an uninterrupted
// run writes.
func (w *Writer) reopen(rel string, st *Safetensors, rows []Row) {
	var groups []pendingGroup
	for _, r := range rows {
		if len(groups) == 0 || groups[len(groups)-1].rows[0].Group != r.Group {
			groups = append(groups, pendingGroup{refs: r.References, refSums: r.ReferenceSHA256})
		}
		g := &groups[len(groups)-1]
		g.rows = append(g.rows, r)
	}
	for i := range groups {
		prefix := groups[i].rows[0].Group + "/"
		for _, t := range st.Tensors {
			if strings.HasPrefix(t.Name, prefix) {
				groups[i].tensors = append(groups[i].tensors, t)
			}
		}
	}
	w.pending, w.reopened, w.reopenedGroups = groups, rel, len(groups)
}

// Repairs lists what a resume found missing or damaged, one entry per shard ("shards/...: what");
// the groups of those shards are redone as they are added again.
func (w *Writer) Repairs() []string { return w.repairs }

// addShard records shard rel of size bytes as named by the manifest, or updates its size.
func (w *Writer) addShard(rel string, size int64) {
	if old, ok := w.sizes[rel]; ok {
		w.bytes -= old
	} else {
		w.shards = append(w.shards, rel)
	}
	w.sizes[rel] = size
	w.bytes += size
}

// removeShard forgets shard rel.
func (w *Writer) removeShard(rel string) {
	w.bytes -= w.sizes[rel]
	delete(w.sizes, rel)
	w.shards = slices.DeleteFunc(w.shards, func(s string) bool { return s == rel })
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
// would not fit in it. g's references (Adv-GRPO) are copied into the dataset. A group of a
// damaged shard found on resume goes back into that shard, which is rewritten once all its
// groups are added again.
func (w *Writer) Add(g *Group) error {
	if w.err != nil {
		return w.err
	}
	if w.done[g.ID] || slices.ContainsFunc(w.pending, func(p pendingGroup) bool { return len(p.rows) > 0 && p.rows[0].Group == g.ID }) {
		return fmt.Errorf("group %s is already in dataset %s", g.ID, w.dir)
	}
	pg, err := w.prepare(g)
	if err != nil {
		return err
	}
	if rel, ok := w.holeOf[g.ID]; ok {
		return w.fill(rel, pg)
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

// prepare writes g's references and images, recording their sha256, and returns its rows and
// tensors under their shard keys.
func (w *Writer) prepare(g *Group) (pendingGroup, error) {
	var pg pendingGroup
	for j, src := range g.References {
		rel := filepath.ToSlash(filepath.Join(RefDir, fmt.Sprintf("%s-%d%s", g.ID, j, strings.ToLower(filepath.Ext(src)))))
		sum, err := copyFile(filepath.Join(w.dir, rel), src)
		if err != nil {
			return pg, fmt.Errorf("copy reference image: %w", err)
		}
		pg.refs = append(pg.refs, rel)
		pg.refSums = append(pg.refSums, sum)
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
		sum, err := writePNG(filepath.Join(w.dir, rel), g, k)
		if err != nil {
			return pg, err
		}
		r := w.row(g, k, rel, keys, pg.refs)
		r.ImageSHA256, r.ReferenceSHA256 = sum, pg.refSums
		pg.rows = append(pg.rows, r)
	}
	return pg, nil
}

// fill adds a group of hole rel and, once the hole holds all its groups again, rewrites it in
// their recorded order under its own name.
func (w *Writer) fill(rel string, pg pendingGroup) error {
	h := w.holes[rel]
	h.pending = append(h.pending, pg)
	if len(h.pending) < len(h.groups) {
		return nil
	}
	groups := make([]pendingGroup, 0, len(h.groups))
	for _, id := range h.groups {
		i := slices.IndexFunc(h.pending, func(p pendingGroup) bool { return p.rows[0].Group == id })
		groups = append(groups, h.pending[i])
	}
	rows, size, err := w.writeShard(rel, groups)
	if err != nil {
		w.err = err
		return err
	}
	// The new rows take the old ones' place, so the manifest keeps its group order.
	at := slices.IndexFunc(w.rows, func(r Row) bool { return r.Shard == rel })
	w.rows = slices.DeleteFunc(w.rows, func(r Row) bool { return r.Shard == rel })
	if at < 0 || at > len(w.rows) {
		at = len(w.rows)
	}
	w.rows = slices.Insert(w.rows, at, rows...)
	for _, id := range h.groups {
		w.done[id] = true
		delete(w.holeOf, id)
	}
	delete(w.holes, rel)
	w.addShard(rel, size)
	w.err = w.writeIndex()
	return w.err
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
	if rel := w.reopened; rel != "" {
		w.reopened = ""
		if len(w.pending) == w.reopenedGroups {
			// Nothing was added: the shard on disk holds exactly these groups already.
			w.pending = nil
			w.next++
			return nil
		}
		// Its rows are written again below, with the groups added since.
		w.rows = slices.DeleteFunc(w.rows, func(r Row) bool { return r.Shard == rel })
		w.removeShard(rel)
	}
	rel := fmt.Sprintf("%s/shard-%05d.safetensors", ShardDir, w.next)
	rows, n, err := w.writeShard(rel, w.pending)
	if err != nil {
		return err
	}
	w.rows = append(w.rows, rows...)
	for _, g := range w.pending {
		w.done[g.rows[0].Group] = true
	}
	w.pending = nil
	w.addShard(rel, n)
	w.next++
	return w.writeIndex()
}

// writeShard writes groups as shard rel and returns their rows, naming the shard and its
// sha256, and the shard's size.
func (w *Writer) writeShard(rel string, groups []pendingGroup) ([]Row, int64, error) {
	var ts []Tensor
	for _, g := range groups {
		ts = append(ts, g.tensors...)
	}
	meta := shardMetadata(groups, w.o.Mode)
	h := sha256.New()
	var n int64
	err := atomicfile.WriteFunc(filepath.Join(w.dir, rel), 0o644, func(f *os.File) error {
		bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
		var err error
		if n, err = WriteSafetensors(bw, ts, meta); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return nil, 0, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
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

// Finish commits the buffered groups and marks the dataset complete in dataset.json. A damaged
// shard whose groups were not all added again leaves the dataset incomplete, and is an error.
func (w *Writer) Finish() error {
	if err := w.Commit(); err != nil {
		return err
	}
	if len(w.holes) > 0 {
		var names []string
		for rel, h := range w.holes {
			names = append(names, fmt.Sprintf("%s (groups %s)", rel, strings.Join(h.groups, ", ")))
		}
		slices.Sort(names)
		return fmt.Errorf("dataset %s: damaged shards were not redone because their groups were not added again: %s; resume with the prompts that made them", w.dir, strings.Join(names, "; "))
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

// copyFile copies src to dst atomically and returns the copy's hex sha256.
func copyFile(dst, src string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	h := sha256.New()
	err = atomicfile.WriteFunc(dst, 0o644, func(f *os.File) error {
		_, err := io.Copy(io.MultiWriter(f, h), in)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
