package finetune

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/filehash"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/sampler"
)

// An export runs as a batch job (package batch) whose items are its groups. Each finished group
// is an item of the work folder: <id>.safetensors (its tensors under their shard keys),
// <id>.json (its manifest rows, shard and advantage not yet set), <id>.NN.png (sample NN's
// image) and <id>.refJ.EXT (reference J), with a batch record holding every file's size and
// sha256. The dataset (shards, manifest, groups, pairs, images) is assembled from the finished
// groups in group order, so it is a function of them alone; batch's records are the one
// resume protocol.

// WorkDir is the work folder of the dataset in dir: the batch job's output folder, where every
// finished group is kept (see [Export]). It lies inside batch.State, the hidden folder of an
// output folder's job state, so that it is never taken for part of the dataset. It holds a
// second copy of the dataset's tensors; deleting it makes the next export sample everything
// again.
func WorkDir(dir string) string { return filepath.Join(dir, batch.State, "groups") }

// jobFileName is the export's description in the dataset folder's state folder: what a merge
// needs to assemble the dataset without the command line that made it.
const jobFileName = "export.json"

// jobFile describes an export: what identifies its data (Mode, Settings) and how its groups are
// assembled into a dataset. Groups is the number of prompts, so that a merge knows when the
// dataset is complete.
type jobFile struct {
	Format       string          `json:"format"`
	Version      int             `json:"version"`
	Mode         Mode            `json:"mode"`
	Groups       int             `json:"groups"`
	Half         bool            `json:"float16_latents"`
	ShardSize    int64           `json:"shard_size"`
	Pairs        PairPolicy      `json:"pairs,omitempty"`
	TieTolerance float64         `json:"tie_tolerance,omitempty"`
	GlobalStd    bool            `json:"global_std,omitempty"`
	Settings     json.RawMessage `json:"settings"`
}

func newJobFile(o *Options, set settings) (*jobFile, error) {
	data, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("dataset settings: %w", err)
	}
	return &jobFile{
		Format: Format, Version: FormatVersion, Mode: o.Mode, Groups: len(o.Prompts), Half: o.Half,
		ShardSize: o.ShardSize, Pairs: o.Pairs, TieTolerance: o.TieTolerance, GlobalStd: o.GlobalStd, Settings: data,
	}, nil
}

func jobFilePath(dir string) string { return filepath.Join(dir, batch.State, jobFileName) }

// readJobFile reads the export description in dataset folder dir.
func readJobFile(dir string) (*jobFile, error) {
	data, err := os.ReadFile(jobFilePath(dir))
	if err != nil {
		return nil, err
	}
	var f jobFile
	if err := json.Unmarshal(data, &f); err != nil || f.Format != Format {
		return nil, fmt.Errorf("%s is not an export's description", jobFilePath(dir))
	}
	return &f, nil
}

// identity is what must be equal for two exports' groups to belong to one dataset: everything
// but the number of prompts (which may grow) and the shard size (which may change).
func (f *jobFile) identity() json.RawMessage {
	c := *f
	c.Groups, c.ShardSize = 0, 0
	data, _ := json.Marshal(c) // plain fields only
	return data
}

// fingerprint identifies the data of every group of the export: its settings.
func (f *jobFile) fingerprint() string {
	sum := sha256.Sum256(f.identity())
	return hex.EncodeToString(sum[:])
}

// check refuses to add f's groups to the dataset folder dir when dir's export was made with
// other settings, naming what differs.
func (f *jobFile) check(dir string) error {
	old, err := readJobFile(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !sameJSON(old.identity(), f.identity()):
		return fmt.Errorf("dataset %s was made with other settings (%s): resume it with the same ones, or use a new folder", dir, diffJSON(old.identity(), f.identity()))
	}
	return nil
}

// claim checks f against dir's export (see check) and records it there.
func (f *jobFile) claim(dir string) error {
	if err := f.check(dir); err != nil {
		return err
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	path := jobFilePath(dir)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("dataset folder %s cannot be created: %w", dir, err)
	}
	return atomicfile.Write(path, append(data, '\n'), 0o644)
}

func (f *jobFile) writerOptions() WriterOptions {
	return WriterOptions{Mode: f.Mode, Half: f.Half, ShardSize: f.ShardSize, Pairs: f.Pairs, TieTolerance: f.TieTolerance, GlobalStd: f.GlobalStd, Settings: f.Settings}
}

// items makes prompt i the batch item GroupID(i).
func items(prompts []string) []batch.Item {
	out := make([]batch.Item, len(prompts))
	for i, p := range prompts {
		out[i] = batch.Item{ID: GroupID(i), Prompt: p, Index: i, Line: i + 1}
	}
	return out
}

// checkPrompts refuses prompts that differ from those the dataset in dir (its manifest, and the
// groups its work folder finished) was sampled for, group by group.
func checkPrompts(dir string, prompts []string) error {
	was := map[string]string{}
	rows, err := ReadManifest(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, r := range rows {
		was[r.Group] = r.Prompt
	}
	for i, prompt := range prompts {
		id := GroupID(i)
		if rec, err := batch.ReadRecord(WorkDir(dir), id); err == nil {
			was[id] = rec.Prompt
		}
		if p, ok := was[id]; ok && p != prompt {
			return fmt.Errorf("dataset %s holds prompt %q as group %s, but the prompts now have %q there: resume with the same prompts file, or use a new folder", dir, clip(p), id, clip(prompt))
		}
	}
	return nil
}

// exportJob is an export's side of its batch job: it prepares each group's task and hears of
// each finished group (batch.Progress).
type exportJob struct {
	o     *Options
	p     pipelines.Pipeline
	fp    string
	start time.Time

	mu      sync.Mutex
	rewards map[string][]float64 // each sampled group's rewards, for Progress
	err     error                // the first group that failed, with its cause
	total   int
	done    int
	skipped int
}

// prepare makes prompt it.Index's task. Its fingerprint covers the export's settings, the prompt,
// the seed and the content of the prompt's reference images.
func (e *exportJob) prepare(it batch.Item) (batch.Task, error) {
	i := it.Index
	seed := e.o.Sampling.Seed + uint64(i)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%q\n%d\n", e.fp, it.Prompt, seed)
	for _, ref := range e.o.References[it.Prompt] {
		sum, _, err := filehash.SHA256(ref)
		if err != nil {
			return batch.Task{}, fmt.Errorf("reference image: %w", err)
		}
		fmt.Fprintln(h, sum)
	}
	return batch.Task{Seed: seed, Fingerprint: hex.EncodeToString(h.Sum(nil)), Render: func(ctx context.Context) ([]batch.File, error) {
		files, err := e.render(ctx, i)
		if err != nil {
			err = fmt.Errorf("prompt %d (%q): %w", i, clip(it.Prompt), err)
			e.mu.Lock()
			if e.err == nil && ctx.Err() == nil {
				e.err = err
			}
			e.mu.Unlock()
		}
		return files, err
	}}, nil
}

// render samples prompt i's group and encodes it as the files of its item.
func (e *exportJob) render(ctx context.Context, i int) ([]batch.File, error) {
	g, err := sampleGroup(ctx, e.p, e.o, i)
	if err != nil {
		return nil, err
	}
	pg, err := prepare(g, e.o.Mode, e.o.Half)
	if err != nil {
		return nil, err
	}
	files, err := itemFiles(pg)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.rewards[g.ID] = g.Rewards()
	e.mu.Unlock()
	return files, nil
}

// Start, Done and Finish make an exportJob the job's batch.Progress, which reports every group
// sampled through Options.Progress.
func (e *exportJob) Start(total, done int) { e.total, e.done, e.skipped = total, done, done }

// Done reports a group sampled; a failed one is reported by Export's error.
func (e *exportJob) Done(id string, _ int, err error) {
	if err != nil {
		return
	}
	e.done++
	e.mu.Lock()
	rs := e.rewards[id]
	delete(e.rewards, id)
	e.mu.Unlock()
	e.o.progress(Progress{Done: e.done, Skipped: e.skipped, Total: e.total, Group: id, Rewards: rs, Elapsed: time.Since(e.start)})
}

// Finish does nothing: Export reports the end.
func (e *exportJob) Finish() {}

// File kinds of a group item besides its images (batch.KindImage).
const (
	kindTensors   = "tensors"
	kindRows      = "rows"
	kindReference = "reference"
)

func imageSuffix(k int) string { return fmt.Sprintf(".%02d.png", k) }

func refSuffix(j int, rel string) string { return fmt.Sprintf(".ref%d%s", j, filepath.Ext(rel)) }

// itemFiles encodes a prepared group as the files of its batch item.
func itemFiles(pg pendingGroup) ([]batch.File, error) {
	var tensors bytes.Buffer
	if _, err := WriteSafetensors(&tensors, pg.tensors, map[string]string{"format": Format, "group": pg.id}); err != nil {
		return nil, err
	}
	rows, err := json.Marshal(pg.rows)
	if err != nil {
		return nil, err
	}
	files := []batch.File{
		{Suffix: ".safetensors", Kind: kindTensors, Data: tensors.Bytes()},
		{Suffix: ".json", Kind: kindRows, Data: rows},
	}
	for k, data := range pg.images {
		f := batch.File{Suffix: imageSuffix(k), Kind: batch.KindImage, Data: data, Seed: pg.rows[k].Seed, Particle: k}
		if r := float64(pg.rows[k].Reward); finite(r) {
			f.Reward = &r
		}
		files = append(files, f)
	}
	for j, data := range pg.refs {
		files = append(files, batch.File{Suffix: refSuffix(j, pg.rows[0].References[j]), Kind: kindReference, Data: data})
	}
	return files, nil
}

// readItem reads a finished group back from the work folder, checking every file against the
// size and sha256 its record names.
func readItem(work string, rec *batch.Record) (pendingGroup, error) {
	pg := pendingGroup{id: rec.ID}
	files := map[string][]byte{}
	for _, f := range rec.Files {
		data, err := os.ReadFile(filepath.Join(work, f.Name))
		if err != nil {
			return pg, fmt.Errorf("group %s: %w; run the export again, which samples it again", rec.ID, err)
		}
		if int64(len(data)) != f.Bytes || sha256Hex(data) != f.SHA256 {
			return pg, fmt.Errorf("group %s: %s changed after it was written; run the export again, which samples the group again", rec.ID, f.Name)
		}
		files[strings.TrimPrefix(f.Name, rec.ID)] = data
	}
	if err := json.Unmarshal(files[".json"], &pg.rows); err != nil || len(pg.rows) == 0 {
		return pg, fmt.Errorf("group %s: its rows do not read (%v)", rec.ID, err)
	}
	st, err := ParseSafetensors(files[".safetensors"])
	if err != nil {
		return pg, fmt.Errorf("group %s: %w", rec.ID, err)
	}
	pg.tensors = st.Tensors
	for k := range pg.rows {
		r := &pg.rows[k]
		if r.Scheduler.Method == sampler.FK && r.LogWeight == nil {
			// JSON null (a log-weight of -Inf or NaN) decodes as no pointer; FK rows carry one.
			lw := Float(math.NaN())
			r.LogWeight = &lw
		}
		pg.images = append(pg.images, files[imageSuffix(k)])
	}
	for j, rel := range pg.rows[0].References {
		pg.refs = append(pg.refs, files[refSuffix(j, rel)])
	}
	return pg, nil
}

// assemble writes the dataset in dir from the groups its work folder's manifest lists, in group
// order, and fills sum's counts. The dataset is complete when every one of f.Groups is there.
func assemble(dir string, f *jobFile, sum *Summary) error {
	work := WorkDir(dir)
	recs, err := batch.ReadManifest(filepath.Join(work, batch.ManifestName))
	if err != nil {
		return err
	}
	w, err := OpenWriter(dir, f.writerOptions())
	if err != nil {
		return err
	}
	for _, rec := range recs {
		pg, err := readItem(work, rec)
		if err != nil {
			return err
		}
		if err := w.add(pg); err != nil {
			return err
		}
	}
	complete := len(recs) == f.Groups
	if err := w.close(complete); err != nil {
		return err
	}
	sum.Groups, sum.Samples, sum.Shards, sum.Bytes, sum.Complete = len(recs), len(w.Rows()), w.Shards(), w.Bytes(), complete
	for _, r := range w.Rows() {
		if !finite(float64(r.Reward)) {
			sum.NoReward++
		}
	}
	return nil
}

// Merge joins the work folders of a sharded export's shards (the --out folders of its runs, or
// one folder they shared) into dest and assembles the dataset there: byte for byte what one
// unsharded export with the same settings writes. batch.Merge does the joining, with its checks:
// every file against its record's sha256, nothing replaced or dropped, no results of another
// job, and no missing or unfinished shard unless partial (the dataset is then marked
// incomplete). Sources made with other settings are refused, naming what differs, before
// anything is written.
func Merge(dest string, sources []string, partial bool) (*Summary, error) {
	if len(sources) == 0 {
		return nil, errors.New("merge needs at least one source folder")
	}
	var f *jobFile
	works := make([]string, len(sources))
	for i, src := range sources {
		g, err := readJobFile(src)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("source %s holds no export (%s is missing): is it the --out of an export?", src, jobFilePath(src))
		}
		if err != nil {
			return nil, err
		}
		if f == nil {
			f = g
		} else if !sameJSON(f.identity(), g.identity()) || f.Groups != g.Groups {
			return nil, fmt.Errorf("sources %s and %s were exported with other settings or prompts (%s): merge the shards of one export", sources[0], src, diffJSON(f.identity(), g.identity()))
		}
		works[i] = WorkDir(src)
	}
	if err := checkDataset(dest, f.Mode, f.Settings); err != nil {
		return nil, err
	}
	if err := f.check(dest); err != nil {
		return nil, err
	}
	if _, err := batch.Merge(WorkDir(dest), works, partial); err != nil {
		return nil, err
	}
	// Recorded only now, so that a refused merge leaves dest as it was.
	if err := f.claim(dest); err != nil {
		return nil, err
	}
	sum := &Summary{Dir: dest}
	return sum, assemble(dest, f, sum)
}
