package sd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/models"
)

// Family is the kind of Stable Diffusion pipeline a folder holds.
type Family string

// Families, each named by the diffusers pipeline classes listed in [IsExport]'s documentation.
const (
	SD   Family = "sd"   // SD 1.x, 2.x and SD-Turbo: one CLIP text encoder
	SDXL Family = "sdxl" // two text encoders, pooled text_embeds and time_ids
	LCM  Family = "lcm"  // LCM-distilled UNet: guidance as timestep_cond, no doubled batch
)

// pipelineClasses maps model_index.json's _class_name to a family. diffusers, optimum and the
// older ONNX conversion script each write their own class names for the same layout.
var pipelineClasses = map[string]Family{
	"StableDiffusionPipeline":             SD,
	"StableDiffusionImg2ImgPipeline":      SD,
	"OnnxStableDiffusionPipeline":         SD,
	"OnnxStableDiffusionImg2ImgPipeline":  SD,
	"ORTStableDiffusionPipeline":          SD,
	"ORTStableDiffusionImg2ImgPipeline":   SD,
	"StableDiffusionXLPipeline":           SDXL,
	"StableDiffusionXLImg2ImgPipeline":    SDXL,
	"ORTStableDiffusionXLPipeline":        SDXL,
	"ORTStableDiffusionXLImg2ImgPipeline": SDXL,
	"LatentConsistencyModelPipeline":      LCM,
	"ORTLatentConsistencyModelPipeline":   LCM,
}

// IsExport reports whether dir looks like a Stable Diffusion export: a folder with a
// model_index.json. It says nothing about whether the export is complete; [Open] checks that.
func IsExport(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "model_index.json"))
	return err == nil && st.Mode().IsRegular()
}

// modelIndex is what fksteer reads of model_index.json.
type modelIndex struct {
	Class      string `json:"_class_name"`
	NameOrPath string `json:"_name_or_path"`
	ForceZeros *bool  `json:"force_zeros_for_empty_prompt"`
	family     Family
	parts      map[string]bool // parts named with a non-null library
}

// readIndex reads and checks model_index.json.
func readIndex(dir string) (*modelIndex, error) {
	path := filepath.Join(dir, "model_index.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("model %s is not a Stable Diffusion export: it has no model_index.json (export one with `optimum-cli export onnx --model <hub id> %s`)", dir, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var idx modelIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", path, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", path, err)
	}
	idx.parts = map[string]bool{}
	for key, v := range raw {
		var pair []*string
		if strings.HasPrefix(key, "_") || json.Unmarshal(v, &pair) != nil || len(pair) != 2 {
			continue
		}
		idx.parts[key] = pair[0] != nil && pair[1] != nil
	}
	fam, ok := pipelineClasses[idx.Class]
	if !ok {
		names := slices.Sorted(maps.Keys(pipelineClasses))
		return nil, fmt.Errorf("%s: pipeline class %q is not supported; fksteer runs Stable Diffusion 1.x/2.x, SD-Turbo, SDXL and LCM exports (%s)", path, idx.Class, strings.Join(names, ", "))
	}
	idx.family = fam
	return &idx, nil
}

// part is one sub-folder of an export: a model with its config.json.
type part struct {
	name  string // "unet", "text_encoder", ...
	dir   string
	model string // dir/model.onnx
}

// requirePart checks that dir/name/model.onnx exists and names the fix when it does not.
func requirePart(dir, name string) (part, error) {
	p := part{name: name, dir: filepath.Join(dir, name)}
	p.model = filepath.Join(p.dir, "model.onnx")
	st, err := os.Stat(p.model)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p, fmt.Errorf("model folder %s is incomplete: %s is missing (copy the whole export, or re-export it with optimum-cli export onnx)", dir, filepath.Join(name, "model.onnx"))
	case err != nil:
		return p, fmt.Errorf("model folder %s: %w", dir, err)
	case !st.Mode().IsRegular():
		return p, fmt.Errorf("model folder %s: %s is not a file", dir, filepath.Join(name, "model.onnx"))
	}
	return p, nil
}

// readConfig decodes part's config.json into v. A missing file is not an error when optional.
func (p part) readConfig(v any, optional bool) error {
	path := filepath.Join(p.dir, "config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && optional {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s config: %w", p.name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s is not a valid config: %w", path, err)
	}
	return nil
}

// unetConfig is what fksteer reads of unet/config.json.
type unetConfig struct {
	SampleSize      json.RawMessage `json:"sample_size"`
	InChannels      int             `json:"in_channels"`
	TimeCondProjDim int             `json:"time_cond_proj_dim"`
}

// size returns sample_size, which diffusers writes as an int or an [h, w] pair.
func (c unetConfig) size() (h, w int, err error) {
	if len(c.SampleSize) == 0 || string(c.SampleSize) == "null" {
		return 0, 0, nil
	}
	var n int
	if json.Unmarshal(c.SampleSize, &n) == nil {
		return n, n, nil
	}
	var hw []int
	if json.Unmarshal(c.SampleSize, &hw) == nil && len(hw) == 2 {
		return hw[0], hw[1], nil
	}
	return 0, 0, fmt.Errorf("unet/config.json: sample_size %s is neither a number nor [height, width]", c.SampleSize)
}

// vaeConfig is what fksteer reads of vae_decoder/config.json.
type vaeConfig struct {
	ScalingFactor    *float64 `json:"scaling_factor"`
	ShiftFactor      *float64 `json:"shift_factor"`
	LatentChannels   int      `json:"latent_channels"`
	BlockOutChannels []int    `json:"block_out_channels"`
}

// withOutputShapes adds to shapes the shape of every float16 output of sess, which ONNX
// Runtime's Go binding cannot size itself: declared dimensions where fixed, dims[i] where
// dynamic. A dynamic dimension dims does not cover is left for NewCall to report.
func withOutputShapes(sess *models.Session, shapes models.Shapes, dims ...int64) models.Shapes {
	for _, out := range sess.Outputs {
		if out.Type != models.Float16 {
			continue
		}
		shape := slices.Clone(out.Dims)
		complete := true
		for i, d := range shape {
			if d < 0 {
				if i >= len(dims) || dims[i] <= 0 {
					complete = false
					break
				}
				shape[i] = dims[i]
			}
		}
		if complete {
			shapes[out.Name] = shape
		}
	}
	return shapes
}
