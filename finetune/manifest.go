package finetune

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/fksteer/fksteer/internal/atomicfile"
)

// Format and FormatVersion identify the dataset layout in dataset.json and in every shard's
// metadata. The version changes when a reader of the old layout would misread the new one.
const (
	Format        = "fksteer-finetune"
	FormatVersion = 1
)

// LogProbConvention names how log_probs are computed, as the manifest records it: the Gaussian
// log-density log N(x_{t-1}; mean, std^2 I) with its constants, averaged (not summed) over the
// C*H*W elements, computed in float64 and stored as float32 (DDPO's ddim_with_logprob, which
// D3PO and Flow-GRPO share). See [github.com/fksteer/fksteer/sampler/step.LogProb] and
// docs/datasets.md.
const LogProbConvention = "gaussian-mean-over-elements"

// Float is a float64 that JSON encodes as null when it is NaN or infinite (which JSON cannot
// represent) and decodes null as NaN.
type Float float64

// MarshalJSON writes the number, or null for a non-finite value.
func (f Float) MarshalJSON() ([]byte, error) {
	if !finite(float64(f)) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(f), 'g', -1, 64), nil
}

// UnmarshalJSON reads a number, or null as NaN.
func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("%s is not a number", b)
	}
	*f = Float(v)
	return nil
}

// Row is one sample's line in manifest.jsonl. Paths are relative to the dataset folder.
type Row struct {
	ID     string `json:"id"`
	Mode   Mode   `json:"mode"`
	Prompt string `json:"prompt"`
	// Class is the class the model was conditioned on (class-conditional models only).
	Class *int64 `json:"class,omitempty"`
	// Seed and NoiseSlot reproduce the initial noise x_T: the stream of (seed, noise_slot).
	Seed      uint64 `json:"seed"`
	Slot      int    `json:"slot"`
	NoiseSlot int    `json:"noise_slot"`
	Group     string `json:"group"`
	Image     string `json:"image"`
	// ImageSHA256 is the hex sha256 of Image, ShardSHA256 that of Shard and ReferenceSHA256
	// those of References, recorded as each file is written: a resumed export checks them and
	// redoes what is missing or damaged. Empty in datasets written before they were recorded.
	ImageSHA256 string `json:"image_sha256,omitempty"`
	// Reward is the training reward. Rewards holds every part's own score by name (a reward that
	// is not a composite is its one part), RewardWeights their weights in Reward, and
	// RewardTexts the text that text-reading parts (OCR) read.
	Reward        Float              `json:"reward"`
	Rewards       map[string]Float   `json:"rewards"`
	RewardWeights map[string]float64 `json:"reward_weights"`
	RewardTexts   map[string]string  `json:"reward_texts,omitempty"`
	// Advantage is the mode's advantage (null for modes without one: d3po, prdp, steered).
	Advantage Float `json:"advantage"`
	// LogWeight is the final FK log-weight, normalised within the group (steered mode only).
	LogWeight   *Float   `json:"log_weight,omitempty"`
	Genealogy   [][2]int `json:"genealogy"`
	ParentIDs   []string `json:"parent_ids"`
	Shard       string   `json:"shard"`
	ShardSHA256 string   `json:"shard_sha256,omitempty"`
	// Tensors maps each tensor name to its key in Shard; Index is the sample's position along
	// the first dimension of the per-sample tensors (latent_index, mean_index, log_probs, ...).
	Tensors           map[string]string `json:"tensors"`
	Index             int               `json:"index"`
	Model             string            `json:"model"`
	ModelHash         string            `json:"model_hash"`
	Scheduler         Scheduler         `json:"scheduler"`
	LogProbConvention string            `json:"log_prob_convention"`
	References        []string          `json:"references,omitempty"`
	ReferenceSHA256   []string          `json:"reference_sha256,omitempty"`
}

// GroupRow is one group's line in groups.jsonl: its samples in slot order with their rewards and
// advantages, and the group's statistics.
type GroupRow struct {
	Group      string   `json:"group"`
	Prompt     string   `json:"prompt"`
	Seed       uint64   `json:"seed"`
	Shard      string   `json:"shard"`
	Samples    []string `json:"samples"`
	Rewards    []Float  `json:"rewards"`
	Mean       Float    `json:"reward_mean"`
	Std        Float    `json:"reward_std"`
	Advantages []Float  `json:"advantages"`
	References []string `json:"references,omitempty"`
}

// DatasetInfo is dataset.json: what the dataset is, how it was made, and whether it is complete.
type DatasetInfo struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Mode    Mode   `json:"mode"`
	// Complete is set when an export has written every prompt; an interrupted one leaves it false
	// (the dataset is still readable, and resumable).
	Complete          bool     `json:"complete"`
	Groups            int      `json:"groups"`
	Samples           int      `json:"samples"`
	Shards            []string `json:"shards"`
	Bytes             int64    `json:"shard_bytes"`
	LogProbConvention string   `json:"log_prob_convention"`
	// Settings are the options the dataset was made with; a resumed export must use the same.
	Settings json.RawMessage `json:"settings,omitempty"`
}

// File names inside a dataset folder.
const (
	InfoFile     = "dataset.json"
	ManifestFile = "manifest.jsonl"
	GroupsFile   = "groups.jsonl"
	PairsFile    = "pairs.jsonl"
	ShardDir     = "shards"
	ImageDir     = "images"
	RefDir       = "references"
)

// readJSONL decodes one value per non-empty line of path into a slice.
func readJSONL[T any](path string) ([]T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []T
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(line, &v); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// writeJSONL writes one JSON line per value, atomically.
func writeJSONL[T any](path string, rows []T) error {
	return atomicfile.WriteFunc(path, 0o644, func(f *os.File) error {
		bw := bufio.NewWriter(f)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
}

// ReadManifest reads a dataset's manifest.jsonl.
func ReadManifest(dir string) ([]Row, error) {
	return readJSONL[Row](filepath.Join(dir, ManifestFile))
}
