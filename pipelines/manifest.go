package pipelines

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fksteer/fksteer/internal/keys"
	"github.com/fksteer/fksteer/schedule"
)

// Manifest describes a single-file ONNX denoiser: which tensors are which, what the output
// predicts, the model's time convention, its conditioning and the value range of its samples.
// examples/mnist-dit-rf.yaml is a complete one; docs/manifest.md documents every key.
type Manifest struct {
	Name string `yaml:"name"`
	// Model is the .onnx file, relative to the manifest's folder or absolute.
	Model        string               `yaml:"model"`
	Inputs       ManifestInputs       `yaml:"inputs"`
	Output       string               `yaml:"output"`
	Prediction   string               `yaml:"prediction"`
	Sample       ManifestSample       `yaml:"sample"`
	Time         ManifestTime         `yaml:"time"`
	Conditioning ManifestConditioning `yaml:"conditioning"`
	Defaults     Defaults             `yaml:"defaults"`

	dir string // the manifest's folder, for relative paths
}

// ManifestInputs names the denoiser's input tensors.
type ManifestInputs struct {
	Sample string `yaml:"sample"`
	Time   string `yaml:"time"`
	Cond   string `yaml:"cond"`
}

// ManifestSample gives the shape of one state and the value range of clean samples.
type ManifestSample struct {
	// Shape is [channels, height, width].
	Shape []int `yaml:"shape"`
	// Range is [low, high] of clean data: a decoded image is (x - low)/(high - low), clipped.
	Range []float64 `yaml:"range"`
}

// ManifestTime is the model's time convention.
type ManifestTime struct {
	// Kind is "continuous" (a rectified flow x_t = (1-t) x0 + t noise; the model sees t) or
	// "discrete" (a variance-preserving model trained on timesteps 0..train_steps-1).
	Kind string `yaml:"kind"`
	// Noise is, for continuous time, the time value the model uses for pure noise: 1 (default)
	// or 0 (models that count time from noise to data).
	Noise *float64 `yaml:"noise"`
	// Scale multiplies the continuous time before the model sees it (e.g. 1000).
	Scale float64 `yaml:"scale"`
	// Shift is a flow time shift (t' = shift t / (1 + (shift-1) t)); 0 or 1 means none.
	Shift float64 `yaml:"shift"`

	// Discrete-time schedule, as in diffusers' scheduler_config.json.
	TrainSteps    int     `yaml:"train_steps"`
	BetaStart     float64 `yaml:"beta_start"`
	BetaEnd       float64 `yaml:"beta_end"`
	BetaSchedule  string  `yaml:"beta_schedule"`
	Spacing       string  `yaml:"timestep_spacing"`
	StepsOffset   *int    `yaml:"steps_offset"`
	SetAlphaToOne *bool   `yaml:"set_alpha_to_one"`
}

// ManifestConditioning says how the model is conditioned.
type ManifestConditioning struct {
	// Kind is "none", "class" or "text".
	Kind string `yaml:"kind"`
	// Classes names the classes in id order (class-conditional models); a prompt selects the class
	// whose name appears in it as a word.
	Classes []string `yaml:"classes"`
	// NullClass is the id of the null class used for unconditional samples and guidance. (The key
	// is not `null`, which YAML reads as a null key.)
	NullClass *int64 `yaml:"null_class"`
	// Encoder names the text encoder for "text" conditioning; "glyph-tags" is the built-in
	// glyphs model's.
	Encoder string `yaml:"encoder"`
}

// LoadManifest reads and validates a manifest. Unknown keys are errors naming the closest valid
// key; every problem is reported with the manifest's path.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("model manifest %s does not exist", path)
		}
		return nil, fmt.Errorf("read model manifest %s: %w", path, err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", path, err)
	}
	m.dir = filepath.Dir(path)
	return m, nil
}

// ManifestError reports a manifest whose contents are wrong: not YAML, an unknown key, a value
// out of range. Fixing the file is the only cure, so front ends report it as bad usage (the CLI
// exits with code 2), as they do a bad config file.
type ManifestError struct{ Err error }

func (e *ManifestError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ManifestError) Unwrap() error { return e.Err }

// ParseManifest decodes and validates manifest YAML; relative model paths are taken from the
// current folder. Its errors are [*ManifestError]s.
func ParseManifest(data []byte) (*Manifest, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ManifestError{fmt.Errorf("not valid YAML: %w", err)}
	}
	if err := keys.Check(doc, reflect.TypeOf(Manifest{})); err != nil {
		return nil, &ManifestError{err}
	}
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, &ManifestError{fmt.Errorf("not a valid manifest: %w", err)}
	}
	if err := m.validate(); err != nil {
		return nil, &ManifestError{err}
	}
	return &m, nil
}

// ModelPath is the model file the manifest names, resolved against the manifest's folder.
func (m *Manifest) ModelPath() string {
	if filepath.IsAbs(m.Model) || m.dir == "" {
		return m.Model
	}
	return filepath.Join(m.dir, m.Model)
}

func (m *Manifest) validate() error {
	var problems []string
	need := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	need(m.Model != "", "`model` must name the .onnx file")
	need(m.Inputs.Sample != "", "`inputs.sample` must name the noisy-sample input")
	need(m.Inputs.Time != "", "`inputs.time` must name the time input")
	need(m.Output != "", "`output` must name the denoiser's output")
	if _, err := ParsePrediction(m.Prediction); err != nil {
		problems = append(problems, "`prediction`: "+err.Error())
	}
	need(len(m.Sample.Shape) == 3 && m.Sample.Shape[0] > 0 && m.Sample.Shape[1] > 0 && m.Sample.Shape[2] > 0,
		"`sample.shape` must be [channels, height, width] with positive sizes (got %v)", m.Sample.Shape)
	need(len(m.Sample.Shape) != 3 || stateElements(m.Sample.Shape) <= MaxStateElements,
		"`sample.shape` %v holds more than %d values per sample", m.Sample.Shape, MaxStateElements)
	if m.Sample.Range == nil {
		m.Sample.Range = []float64{-1, 1}
	}
	need(len(m.Sample.Range) == 2 && m.Sample.Range[0] < m.Sample.Range[1], "`sample.range` must be [low, high] with low < high (got %v)", m.Sample.Range)
	switch m.Time.Kind {
	case "continuous":
		if m.Time.Scale == 0 {
			m.Time.Scale = 1
		}
		if m.Time.Noise == nil {
			one := 1.0
			m.Time.Noise = &one
		}
		need(*m.Time.Noise == 0 || *m.Time.Noise == 1, "`time.noise` must be 0 or 1 (got %g)", *m.Time.Noise)
		need(m.Time.Scale > 0, "`time.scale` must be positive")
		need(m.Time.Shift >= 0, "`time.shift` must not be negative")
	case "discrete":
		if _, err := m.discrete(); err != nil {
			problems = append(problems, "`time`: "+err.Error())
		}
	default:
		problems = append(problems, fmt.Sprintf("`time.kind` must be continuous or discrete (got %q)", m.Time.Kind))
	}
	switch CondKind(m.Conditioning.Kind) {
	case "", Unconditioned:
		m.Conditioning.Kind = string(Unconditioned)
	case ClassCond:
		need(m.Inputs.Cond != "", "class conditioning needs `inputs.cond`")
		need(len(m.Conditioning.Classes) > 0, "class conditioning needs `conditioning.classes` (class names in id order)")
		need(m.Conditioning.NullClass != nil, "class conditioning needs `conditioning.null_class` (the unconditional class id)")
		// A null class outside the model's ids would reach ONNX Runtime as an out-of-range
		// embedding index, whose error names neither the key nor the fix. The null class is one
		// of the named classes or the id after the last.
		if n, null := int64(len(m.Conditioning.Classes)), m.Conditioning.NullClass; null != nil && n > 0 && (*null < 0 || *null > n) {
			problems = append(problems, fmt.Sprintf("`conditioning.null_class` %d is not a class id of this model: use 0..%d (%d, the id after the %d named classes, is the usual unconditional class)", *null, n, n, n))
		}
	case VectorCond:
		need(m.Inputs.Cond != "", "text conditioning needs `inputs.cond`")
		need(m.Conditioning.Encoder == "glyph-tags", "text conditioning needs `conditioning.encoder`; the encoder available to manifests is glyph-tags (Stable Diffusion folders bring their own text encoder)")
	default:
		problems = append(problems, fmt.Sprintf("`conditioning.kind` must be none, class or text (got %q)", m.Conditioning.Kind))
	}
	need(m.Defaults.Steps >= 0, "`defaults.steps` must not be negative")
	if m.Defaults.Sampler != "" {
		rule, err := schedule.ParseRule(string(m.Defaults.Sampler))
		if err != nil {
			problems = append(problems, "`defaults.sampler`: "+err.Error())
		}
		m.Defaults.Sampler = rule
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// MaxStateElements bounds the values of one sample a manifest may declare (1 GiB of float32):
// far above any real model's (Stable Diffusion XL's latents hold 65536), and low enough that a
// particle batch's size cannot overflow.
const MaxStateElements = 1 << 28

// stateElements is the product of a shape's positive sizes, saturating above MaxStateElements.
func stateElements(shape []int) int {
	n := 1
	for _, d := range shape {
		if d > 0 && n > MaxStateElements/d {
			return MaxStateElements + 1
		}
		n *= max(d, 1)
	}
	return n
}

// discrete builds the discrete-time schedule, filling diffusers' defaults for unset keys.
func (m *Manifest) discrete() (schedule.Discrete, error) {
	d := schedule.DefaultSD()
	t := m.Time
	if t.TrainSteps != 0 {
		d.TrainSteps = t.TrainSteps
	}
	if t.BetaStart != 0 {
		d.BetaStart = t.BetaStart
	}
	if t.BetaEnd != 0 {
		d.BetaEnd = t.BetaEnd
	}
	if t.BetaSchedule != "" {
		b, err := schedule.ParseBetaSchedule(t.BetaSchedule)
		if err != nil {
			return d, err
		}
		d.BetaSchedule = b
	}
	if t.Spacing != "" {
		s, err := schedule.ParseSpacing(t.Spacing)
		if err != nil {
			return d, err
		}
		d.Spacing = s
	}
	if t.StepsOffset != nil {
		d.StepsOffset = *t.StepsOffset
	}
	if t.SetAlphaToOne != nil {
		d.SetAlphaToOne = *t.SetAlphaToOne
	}
	if d.TrainSteps <= 0 {
		return d, fmt.Errorf("train_steps must be positive (got %d)", d.TrainSteps)
	}
	if _, err := d.AlphasCumprod(); err != nil { // betas out of range, train_steps too large
		return d, err
	}
	return d, nil
}
