package finetune

import (
	"encoding/json"
	"fmt"
	"path/filepath"
)

// Dataset is a dataset folder opened for reading: its description, its manifest, and its shards,
// read on first use. It is what a Go trainer (or a test) reads; Python trainers read the same
// files as docs/datasets.md shows.
type Dataset struct {
	Dir    string
	Info   DatasetInfo
	Rows   []Row
	shards map[string]*Safetensors
}

// OpenDataset opens the dataset in dir and checks that it is readable: every shard the manifest
// names parses, holds every tensor its rows name, and no sample appears twice. It works on the
// folder an interrupted export leaves (Info.Complete is then false).
func OpenDataset(dir string) (*Dataset, error) {
	info, err := readInfo(dir)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	rows, err := ReadManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	d := &Dataset{Dir: dir, Info: *info, Rows: rows, shards: map[string]*Safetensors{}}
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.ID] {
			return nil, fmt.Errorf("dataset %s: sample %s appears twice in the manifest", dir, r.ID)
		}
		seen[r.ID] = true
		s, err := d.Shard(r.Shard)
		if err != nil {
			return nil, err
		}
		for name, key := range r.Tensors {
			if _, ok := s.Tensor(key); !ok {
				return nil, fmt.Errorf("dataset %s: sample %s names tensor %s (%s), which shard %s lacks", dir, r.ID, key, name, r.Shard)
			}
		}
	}
	return d, nil
}

// Shard returns the parsed shard at rel (relative to the dataset folder), reading it once.
func (d *Dataset) Shard(rel string) (*Safetensors, error) {
	if s, ok := d.shards[rel]; ok {
		return s, nil
	}
	s, err := ReadSafetensorsFile(filepath.Join(d.Dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", d.Dir, err)
	}
	d.shards[rel] = s
	return s, nil
}

// Tensor returns the tensor name (e.g. "log_probs") of r's group.
func (d *Dataset) Tensor(r Row, name string) (Tensor, error) {
	key, ok := r.Tensors[name]
	if !ok {
		return Tensor{}, fmt.Errorf("sample %s has no tensor %s", r.ID, name)
	}
	s, err := d.Shard(r.Shard)
	if err != nil {
		return Tensor{}, err
	}
	t, ok := s.Tensor(key)
	if !ok {
		return Tensor{}, fmt.Errorf("shard %s lacks tensor %s", r.Shard, key)
	}
	return t, nil
}

// Trajectory is one sample's path as a trainer reads it from a dataset, in float32.
type Trajectory struct {
	// Latents are x_T .. x_0 (Steps+1 states), Means the Steps step means.
	Latents, Means [][]float32
	// Stds, LogProbs and Timesteps have one value per step.
	Stds, LogProbs, Timesteps []float32
}

// Trajectory gathers r's states and step means through its group's index tensors, as
// latents[latent_index[i]] does in PyTorch.
func (d *Dataset) Trajectory(r Row) (*Trajectory, error) {
	get := func(name string) ([]float32, []int, error) {
		t, err := d.Tensor(r, name)
		if err != nil {
			return nil, nil, err
		}
		v, err := t.Float32()
		return v, t.Shape, err
	}
	gather := func(name, index string) ([][]float32, error) {
		pool, shape, err := get(name)
		if err != nil {
			return nil, err
		}
		it, err := d.Tensor(r, index)
		if err != nil {
			return nil, err
		}
		idx, err := it.Int64()
		if err != nil {
			return nil, err
		}
		n, size := it.Shape[1], numel(shape[1:])
		out := make([][]float32, n)
		for s := range n {
			j := int(idx[r.Index*n+s])
			if j < 0 || j >= shape[0] {
				return nil, fmt.Errorf("sample %s: %s[%d] = %d outside %s", r.ID, index, s, j, name)
			}
			out[s] = pool[j*size : (j+1)*size]
		}
		return out, nil
	}
	tr := &Trajectory{}
	var err error
	if tr.Latents, err = gather(KeyLatents, KeyLatentIndex); err != nil {
		return nil, err
	}
	if tr.Means, err = gather(KeyMeans, KeyMeanIndex); err != nil {
		return nil, err
	}
	if tr.Stds, _, err = get(KeyStds); err != nil {
		return nil, err
	}
	if tr.Timesteps, _, err = get(KeyTimesteps); err != nil {
		return nil, err
	}
	lp, shape, err := get(KeyLogProbs)
	if err != nil {
		return nil, err
	}
	tr.LogProbs = lp[r.Index*shape[1] : (r.Index+1)*shape[1]]
	return tr, nil
}

// ReadPairs reads a dataset's pairs.jsonl.
func ReadPairs(dir string) ([]Pair, error) { return readJSONL[Pair](filepath.Join(dir, PairsFile)) }

// ReadGroups reads a dataset's groups.jsonl.
func ReadGroups(dir string) ([]GroupRow, error) {
	return readJSONL[GroupRow](filepath.Join(dir, GroupsFile))
}

// Settings decodes the settings recorded in dataset.json into v.
func (d *Dataset) Settings(v any) error { return json.Unmarshal(d.Info.Settings, v) }
