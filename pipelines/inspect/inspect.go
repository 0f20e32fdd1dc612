// Package inspect describes a model file or folder for `fksteer models inspect`: the tensors
// each ONNX model declares and which fksteer pipeline, if any, would run it. The guesses from
// tensor metadata are heuristics and say so; the tensors are read from the models themselves.
package inspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/glyphs"
	"github.com/fksteer/fksteer/pipelines"
)

// Report describes a model.
type Report struct {
	Path string `json:"path"`
	// Format is "built-in", "manifest", "onnx" or "diffusers" (a Stable Diffusion export folder).
	Format     string      `json:"format"`
	Components []Component `json:"components"`
	// Pipeline says what fksteer would run the model with, or why it would not.
	Pipeline string `json:"pipeline"`
	// Manifest is a starting manifest for a bare ONNX denoiser, with its tensor names filled in.
	Manifest string `json:"suggested_manifest,omitempty"`
}

// Component is one ONNX model of a report.
type Component struct {
	Name    string   `json:"name"`
	Path    string   `json:"path"`
	Bytes   int64    `json:"bytes"`
	Inputs  []Tensor `json:"inputs"`
	Outputs []Tensor `json:"outputs"`
	// Role is what the tensors suggest the model is.
	Role Role `json:"role"`
}

// Tensor is one input or output as the model declares it; -1 marks a dynamic dimension.
type Tensor struct {
	Name string  `json:"name"`
	Type string  `json:"type"`
	Dims []int64 `json:"dims"`
}

// Role is what a model's tensors suggest it is.
type Role string

// Roles [Guess] tells apart.
const (
	Denoiser      Role = "denoiser"
	TextEncoder   Role = "text encoder"
	VAEDecoder    Role = "VAE decoder"
	ImageToVector Role = "image classifier or embedding"
	ImageToMap    Role = "dense image model (e.g. a text detector)"
	Unknown       Role = "unknown"
)

// Describe inspects path: "glyphs" (the built-in model, built into cacheDir if needed), a
// manifest (.yaml), an .onnx file, or a Stable Diffusion export folder. ONNX Runtime must be
// initialised ([models.Init]).
func Describe(path, cacheDir string, opts ...models.Option) (*Report, error) {
	switch {
	case path == pipelines.GlyphsName:
		file, err := glyphs.EnsureModel(cacheDir)
		if err != nil {
			return nil, err
		}
		c, err := component("denoiser", file, opts)
		if err != nil {
			return nil, err
		}
		return &Report{Path: path, Format: "built-in", Components: []Component{c},
			Pipeline: "the built-in glyphs pipeline (exact posterior-mean denoiser over 968 rendered glyph images)"}, nil
	case strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml"):
		m, err := pipelines.LoadManifest(path)
		if err != nil {
			return nil, err
		}
		c, err := component("denoiser", m.ModelPath(), opts)
		if err != nil {
			return nil, err
		}
		return &Report{Path: path, Format: "manifest", Components: []Component{c},
			Pipeline: fmt.Sprintf("manifest denoiser %q: %s prediction, %s time, %s conditioning", m.Name, m.Prediction, m.Time.Kind, m.Conditioning.Kind)}, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist (inspect takes glyphs, a manifest .yaml, an .onnx file or a Stable Diffusion export folder)", path)
		}
		return nil, err
	}
	if st.IsDir() {
		return describeFolder(path, opts)
	}
	c, err := component(filepath.Base(path), path, opts)
	if err != nil {
		return nil, err
	}
	r := &Report{Path: path, Format: "onnx", Components: []Component{c}}
	switch c.Role {
	case Denoiser:
		r.Pipeline = "a single-file denoiser: describe it with a manifest (docs/manifest.md) and pass the manifest as --model; a starting manifest follows"
		r.Manifest = SuggestManifest(path, c)
	case ImageToVector:
		r.Pipeline = "not a generator; if its outputs are class logits it can be a reward: --reward classifier:model=" + path
	case TextEncoder, VAEDecoder:
		r.Pipeline = "a component of a Stable Diffusion export; point fksteer at the export's folder"
	default:
		r.Pipeline = "no fksteer pipeline runs this model directly"
	}
	return r, nil
}

func describeFolder(dir string, opts []models.Option) (*Report, error) {
	index := filepath.Join(dir, "model_index.json")
	data, err := os.ReadFile(index)
	if err != nil {
		return nil, fmt.Errorf("%s is a folder without model_index.json: not a Stable Diffusion export (inspect one .onnx file instead)", dir)
	}
	var idx map[string]any
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", index, err)
	}
	r := &Report{Path: dir, Format: "diffusers"}
	for _, name := range []string{"text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder"} {
		p := filepath.Join(dir, name, "model.onnx")
		if _, err := os.Stat(p); err != nil {
			continue
		}
		c, err := component(name, p, opts)
		if err != nil {
			return nil, err
		}
		r.Components = append(r.Components, c)
	}
	class, _ := idx["_class_name"].(string)
	r.Pipeline = fmt.Sprintf("a Stable Diffusion export (%s, diffusers/optimum ONNX layout)", class)
	return r, nil
}

func component(name, path string, opts []models.Option) (Component, error) {
	s, err := models.Open(path, opts...)
	if err != nil {
		return Component{}, err
	}
	defer s.Close()
	c := Component{Name: name, Path: path, Inputs: tensors(s.Inputs), Outputs: tensors(s.Outputs)}
	if st, err := os.Stat(path); err == nil {
		c.Bytes = st.Size()
	}
	c.Role = Guess(s.Inputs, s.Outputs)
	return c, nil
}

func tensors(ts []models.TensorInfo) []Tensor {
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		typ := t.Type.String()
		if t.Type == models.Unsupported {
			typ = t.ONNXType
		}
		out[i] = Tensor{Name: t.Name, Type: typ, Dims: slices.Clone(t.Dims)}
		if out[i].Dims == nil {
			out[i].Dims = []int64{}
		}
	}
	return out
}

// Guess tells from a model's declared tensors what it probably is: a denoiser (a 4-D sample and
// a scalar or 1-D time in, a 4-D output), a text encoder (2-D integer token ids in), a VAE
// decoder (one 4-D latent in, one 4-D image out), an image-to-vector model (one 4-D image in,
// 2-D out) or a dense image model (4-D in, 4-D out).
func Guess(in, out []models.TensorInfo) Role {
	var sample, time, tokens bool
	for _, t := range in {
		lower := strings.ToLower(t.Name)
		switch {
		case len(t.Dims) == 4 && t.Type.IsFloat():
			sample = true
		case len(t.Dims) <= 1 && (strings.Contains(lower, "time") || strings.Contains(lower, "sigma") || lower == "t"):
			time = true
		case len(t.Dims) == 2 && (t.Type == models.Int64 || t.Type == models.Int32) && (strings.Contains(lower, "id") || strings.Contains(lower, "token")):
			tokens = true
		}
	}
	out4 := len(out) > 0 && len(out[0].Dims) == 4
	switch {
	case sample && time && out4:
		return Denoiser
	case tokens:
		return TextEncoder
	case len(in) == 1 && sample && out4 && strings.Contains(strings.ToLower(in[0].Name), "latent"):
		return VAEDecoder
	case len(in) == 1 && sample && len(out) > 0 && len(out[0].Dims) == 2:
		return ImageToVector
	case len(in) == 1 && sample && out4:
		return ImageToMap
	}
	return Unknown
}

// SuggestManifest writes a starting manifest for a bare ONNX denoiser: tensor names and shape
// from the model, everything the metadata cannot tell (prediction type, time convention,
// conditioning) marked for the user to fill in.
func SuggestManifest(path string, c Component) string {
	var sample, time, cond string
	shape := "[C, H, W]"
	for _, t := range c.Inputs {
		lower := strings.ToLower(t.Name)
		switch {
		case len(t.Dims) == 4 && sample == "":
			sample = t.Name
			if t.Dims[1] > 0 && t.Dims[2] > 0 && t.Dims[3] > 0 {
				shape = fmt.Sprintf("[%d, %d, %d]", t.Dims[1], t.Dims[2], t.Dims[3])
			}
		case len(t.Dims) <= 1 && time == "" && (strings.Contains(lower, "time") || strings.Contains(lower, "sigma") || lower == "t"):
			time = t.Name
		case cond == "":
			cond = t.Name
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Starting manifest written by fksteer models inspect; check every line marked CHECK.\n")
	fmt.Fprintf(&b, "# Every key is documented in docs/manifest.md.\n")
	fmt.Fprintf(&b, "name: %s\n", strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
	fmt.Fprintf(&b, "model: %s\n", filepath.Base(path))
	fmt.Fprintf(&b, "inputs:\n  sample: %s\n  time: %s\n", sample, time)
	if cond != "" {
		fmt.Fprintf(&b, "  cond: %s\n", cond)
	}
	fmt.Fprintf(&b, "output: %s\n", c.Outputs[0].Name)
	fmt.Fprintf(&b, "prediction: epsilon     # CHECK: epsilon, v, x0 or flow\n")
	fmt.Fprintf(&b, "sample:\n  shape: %s\n  range: [-1, 1]     # CHECK: the value range of clean samples\n", shape)
	fmt.Fprintf(&b, "time:\n  kind: continuous      # CHECK: continuous (flow, t in [0, 1]) or discrete (timesteps)\n")
	if cond != "" {
		fmt.Fprintf(&b, "conditioning:\n  kind: class           # CHECK: class (add classes and null_class) or text\n")
	} else {
		fmt.Fprintf(&b, "conditioning:\n  kind: none\n")
	}
	return b.String()
}
