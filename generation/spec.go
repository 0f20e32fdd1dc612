package generation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fksteer/fksteer/internal/keys"
)

// Spec describes one generation, whole: the model, what to draw, how to sample and steer it, and
// what to write. It is what fksteer generate runs, what an output PNG's "parameters" chunk
// records (ParseParameters reads it back), what identifies a batch item and what a server
// request carries. Its keys are fksteer's configuration keys (`fksteer config show`): a spec
// file is a config file of one run.
//
// A zero field means "the default": the model's recommendation for Steps, Sampler, Eta and
// Guidance (pointers where zero is a value of its own), fksteer's documented default for the
// rest (DefaultSpec). A Spec is plain data: Env.Prepare checks it and resolves it.
type Spec struct {
	// Model names the model: "glyphs" (built in; the default), a name from Env.Models or a
	// pulled catalog export, a manifest .yaml or a Stable Diffusion export folder.
	Model          string `json:"model,omitempty" yaml:"model,omitempty"`
	Prompt         string `json:"prompt,omitempty" yaml:"prompt,omitempty"`
	NegativePrompt string `json:"negative-prompt,omitempty" yaml:"negative-prompt,omitempty"`
	// Class, for class-conditional models, overrides the class the prompt names.
	Class *int64 `json:"class,omitempty" yaml:"class,omitempty"`
	// InitImage starts from an image (image-to-image, Stable Diffusion); Strength in (0, 1] is
	// the share of the steps that redraw it (0: 0.8).
	InitImage string  `json:"init-image,omitempty" yaml:"init-image,omitempty"`
	Strength  float64 `json:"strength,omitempty" yaml:"strength,omitempty"`

	Steps    int      `json:"steps,omitempty" yaml:"steps,omitempty"`
	Sampler  string   `json:"sampler,omitempty" yaml:"sampler,omitempty"`
	Eta      *float64 `json:"eta,omitempty" yaml:"eta,omitempty"`
	Guidance *float64 `json:"guidance,omitempty" yaml:"guidance,omitempty"`
	// Seed is the first image's seed; image i uses Seed+i.
	Seed uint64 `json:"seed,omitempty" yaml:"seed,omitempty"`
	// Images is the number of images (0: 1).
	Images int `json:"num-images,omitempty" yaml:"num-images,omitempty"`

	// Method is base, bon, fk, svdd, beam, dts, dts-star, noise or random ("":
	// sampler.DefaultMethod, base without a reward, svdd or noise with one);
	// Particles is K per image (0: 1): the particles of bon, fk and svdd, the beams of beam, the
	// samples dts and dts-star draw from their tree and noise and random keep.
	Method    string `json:"method,omitempty" yaml:"method,omitempty"`
	Particles int    `json:"particles,omitempty" yaml:"particles,omitempty"`
	// Select is best, all or sample ("": all for base, best otherwise).
	Select string `json:"select,omitempty" yaml:"select,omitempty"`
	// Reward is a reward spec (rewards.Parse), e.g. "classifier:model=m.onnx,target=3".
	Reward string `json:"reward,omitempty" yaml:"reward,omitempty"`
	// References are reference image files some rewards compare with (a batch item's).
	References []string `json:"references,omitempty" yaml:"references,omitempty"`

	// FK's settings (potentials): Potential ("": diff), Lambda (nil: 10), its ramp from LambdaStart
	// ("": constant), evaluations every ResampleEvery steps (0: scaled to the steps) from
	// ResampleStart to ResampleEnd (nil: scaled), resampling only below ESSThreshold·K (0:
	// always) with Resampler ("": systematic).
	Potential     string   `json:"potential,omitempty" yaml:"potential,omitempty"`
	Lambda        *float64 `json:"lambda,omitempty" yaml:"lambda,omitempty"`
	LambdaStart   float64  `json:"lambda-start,omitempty" yaml:"lambda-start,omitempty"`
	LambdaRamp    string   `json:"lambda-ramp,omitempty" yaml:"lambda-ramp,omitempty"`
	ResampleEvery int      `json:"resample-every,omitempty" yaml:"resample-every,omitempty"`
	ResampleStart *int     `json:"resample-start,omitempty" yaml:"resample-start,omitempty"`
	ResampleEnd   *int     `json:"resample-end,omitempty" yaml:"resample-end,omitempty"`
	ESSThreshold  float64  `json:"ess-threshold,omitempty" yaml:"ess-threshold,omitempty"`
	Resampler     string   `json:"resampler,omitempty" yaml:"resampler,omitempty"`

	// Compute and search settings (sampler.Search): Budget in NFE per image sizes the method
	// (0: the settings below and Particles); Candidates (svdd's M, beam's C), Alpha (svdd's
	// temperature), BeamEvery (beam's branch interval), Neighbours, Rounds and NoiseScale
	// (noise and random search), Iterations, Widening and Exploration (dts and dts-star; their
	// lambda is Lambda). Zero means the default.
	Budget      int     `json:"budget,omitempty" yaml:"budget,omitempty"`
	Candidates  int     `json:"candidates,omitempty" yaml:"candidates,omitempty"`
	Alpha       float64 `json:"alpha,omitempty" yaml:"alpha,omitempty"`
	BeamEvery   int     `json:"beam-every,omitempty" yaml:"beam-every,omitempty"`
	Neighbours  int     `json:"neighbours,omitempty" yaml:"neighbours,omitempty"`
	Rounds      int     `json:"rounds,omitempty" yaml:"rounds,omitempty"`
	NoiseScale  float64 `json:"noise-scale,omitempty" yaml:"noise-scale,omitempty"`
	Iterations  int     `json:"iterations,omitempty" yaml:"iterations,omitempty"`
	Widening    float64 `json:"widening,omitempty" yaml:"widening,omitempty"`
	Exploration float64 `json:"exploration,omitempty" yaml:"exploration,omitempty"`

	// Stable Diffusion exports only: Scheduler overrides scheduler_config.json, Width and Height
	// (multiples of 8; 0: the UNet's size), GuidanceRescale φ, and PreviewDecoder, a small
	// decoder for the intermediate rewards of steering.
	Scheduler       string  `json:"scheduler,omitempty" yaml:"scheduler,omitempty"`
	Width           int     `json:"width,omitempty" yaml:"width,omitempty"`
	Height          int     `json:"height,omitempty" yaml:"height,omitempty"`
	GuidanceRescale float64 `json:"guidance-rescale,omitempty" yaml:"guidance-rescale,omitempty"`
	PreviewDecoder  string  `json:"preview-decoder,omitempty" yaml:"preview-decoder,omitempty"`

	// ContactSheet also draws each image's particles at every resampling step (and a grid).
	ContactSheet bool `json:"contact-sheet,omitempty" yaml:"contact-sheet,omitempty"`
}

// Defaults of the keys whose zero value is not their default.
const (
	DefaultModel    = "glyphs"
	DefaultLambda   = 10.0
	DefaultStrength = 0.8
)

// withDefaults fills the zero fields that have a fixed default, so that what a run records is
// what it used.
func (s Spec) withDefaults() Spec {
	if s.Model == "" {
		s.Model = DefaultModel
	}
	if s.Images == 0 {
		s.Images = 1
	}
	if s.Particles == 0 {
		s.Particles = 1
	}
	if s.Lambda == nil {
		l := DefaultLambda
		s.Lambda = &l
	}
	if s.LambdaRamp == "" {
		s.LambdaRamp = "constant"
	}
	if s.Potential == "" {
		s.Potential = "diff"
	}
	if s.Resampler == "" {
		s.Resampler = "systematic"
	}
	if s.InitImage != "" && s.Strength == 0 {
		s.Strength = DefaultStrength
	}
	return s
}

// SDOnly reports the Stable Diffusion keys s sets, by name, so that a model which is no export
// can refuse them rather than ignore them.
func (s Spec) SDOnly() []string {
	var set []string
	for _, f := range []struct {
		key string
		on  bool
	}{{"scheduler", s.Scheduler != ""}, {"width", s.Width != 0}, {"height", s.Height != 0},
		{"guidance-rescale", s.GuidanceRescale != 0}, {"preview-decoder", s.PreviewDecoder != ""}} {
		if f.on {
			set = append(set, f.key)
		}
	}
	return set
}

// Map returns the keys s sets (non-zero fields) with their values as JSON gives them: the form
// a front end layers under its own settings (fksteer generate --spec puts its flags above it).
func (s Spec) Map() map[string]any {
	data, _ := json.Marshal(s) // a Spec always marshals: plain fields only
	m := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	_ = dec.Decode(&m)
	return m
}

// Keys lists every key a Spec reads, in the order of its fields.
func Keys() []string {
	return specKeys
}

var (
	specType = reflect.TypeFor[Spec]()
	specKeys = func() []string {
		var names []string
		for f := range specType.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			names = append(names, name)
		}
		return names
	}()
)

// ReadSpec reads a spec file: YAML (.yaml, .yml), JSON (.json) or a PNG written by fksteer, whose
// "parameters" chunk is read with ParseParameters (its init image and references are looked for
// beside the PNG). An unknown key is an error naming the closest known one.
func ReadSpec(path string) (Spec, error) {
	if strings.EqualFold(filepath.Ext(path), ".png") {
		text, err := PNGParameters(path)
		if err != nil {
			return Spec{}, &SpecError{fmt.Errorf("spec %s: %w", path, err)}
		}
		s, err := ParseParameters(text)
		if err != nil {
			return Spec{}, &SpecError{fmt.Errorf("spec %s: %w", path, err)}
		}
		s.rebase(filepath.Dir(path))
		return s, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, &SpecError{fmt.Errorf("spec: %w", err)}
	}
	s, err := DecodeSpec(data)
	if err != nil {
		return Spec{}, &SpecError{fmt.Errorf("spec %s: %w", path, err)}
	}
	return s, nil
}

// DecodeSpec reads a spec from YAML or JSON (JSON is YAML), refusing keys a Spec does not have.
func DecodeSpec(data []byte) (Spec, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Spec{}, fmt.Errorf("not YAML or JSON: %w", err)
	}
	if doc == nil {
		return Spec{}, fmt.Errorf("empty: write the run's settings as key: value lines (fksteer config show lists the keys)")
	}
	if err := keys.Check(doc, specType); err != nil {
		return Spec{}, err
	}
	var s Spec
	if err := yaml.Unmarshal(data, &s); err != nil {
		return Spec{}, fmt.Errorf("bad value: %w", err)
	}
	return s, nil
}

// rebase makes the relative files of a spec read from a PNG relative to the PNG's folder,
// where a run writing them found them (by base name) only if they are kept beside it.
func (s *Spec) rebase(dir string) {
	if s.InitImage != "" && !filepath.IsAbs(s.InitImage) {
		s.InitImage = filepath.Join(dir, s.InitImage)
	}
}

// SpecError is a spec that cannot run as written: the user must change it (exit code 2 in the
// CLI, HTTP 400 in a server).
type SpecError struct{ Err error }

func (e *SpecError) Error() string { return e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }
