package generation

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/fetch"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pipelines/sd"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/schedule"
)

// Env is what specs resolve against: the session options every model opens with, the names
// of configured models, the limits a spec must keep, and caches of the models and rewards
// already open, so that a batch of thousands of specs opens each model once. Its methods are
// safe for concurrent use. Close it when done.
type Env struct {
	// ModelOptions are the ONNX Runtime session options of every model and reward (provider,
	// threads); models.Init must have run.
	ModelOptions []models.Option
	// Models maps configured model names (lower case) to manifest files.
	Models map[string]string
	// Limits are checked before any work; the zero value takes DefaultLimits.
	Limits Limits
	// Log receives what opening models reports (nil: discarded).
	Log *slog.Logger
	// ModelBytes, when positive, bounds the models kept open, counted by the size of their
	// files: opening one more first closes the least recently used models that no Run holds
	// (a server serving many models stays within its memory). 0 keeps every model open.
	ModelBytes int64
	// Available, when set, reports the memory available to a run (batch.AvailableMemory reads
	// Linux's MemAvailable); Prepare then refuses a spec whose images, sampled at once, would
	// need more (EstimateMemory). The CLI, which samples in chunks, checks its own way.
	Available func() (avail uint64, ok bool)

	mu      sync.Mutex
	pipes   map[modelKey]*openModel
	rewards map[string]rewards.Reward
	tick    uint64 // counts uses, to find the least recently used model
}

// openModel is a model Env holds open: its size on disk, the Runs using it, its last use.
type openModel struct {
	p     pipelines.Pipeline
	bytes int64
	refs  int
	used  uint64
}

// Limits bound what a spec may ask for, so that a mistyped number is refused at once rather
// than running for days or until the machine runs out of memory.
type Limits struct {
	Steps, Particles, PromptChars int
}

// DefaultLimits are the limits fksteer applies unless told otherwise.
func DefaultLimits() Limits {
	return Limits{Steps: 10_000, Particles: 10_000, PromptChars: 10_000}
}

func (e *Env) limits() Limits {
	if e.Limits == (Limits{}) {
		return DefaultLimits()
	}
	return e.Limits
}

// modelKey identifies an open pipeline: the same folder opened with other Stable Diffusion
// options is another pipeline.
type modelKey struct {
	arch, path         string
	scheduler, preview string
	width, height      int
	rescale            float64
}

// Architecture opens one kind of model. Detect tells whether a resolved model path is of this
// kind; Open opens it with the spec's model options.
type Architecture struct {
	Name   string
	Detect func(path string) bool
	Open   func(path string, s Spec, e *Env) (pipelines.Pipeline, error)
	// SDOptions says that Open reads the Stable Diffusion keys of a Spec (scheduler, width,
	// height, guidance rescale, preview decoder); other architectures refuse a spec setting them.
	SDOptions bool
}

var (
	archMu        sync.Mutex
	architectures []Architecture
)

// Register adds an architecture; models are matched against architectures in the order they
// were registered (this package registers Stable Diffusion export folders, then manifests).
// Registering a name twice panics: it is a programming error.
func Register(a Architecture) {
	archMu.Lock()
	defer archMu.Unlock()
	if slices.ContainsFunc(architectures, func(b Architecture) bool { return b.Name == a.Name }) {
		panic("generation: architecture " + a.Name + " registered twice")
	}
	architectures = append(architectures, a)
}

func init() {
	Register(Architecture{Name: "stable-diffusion", Detect: sd.IsExport, Open: openSD, SDOptions: true})
	Register(Architecture{
		Name:   "manifest",
		Detect: func(p string) bool { return strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml") },
		Open: func(p string, _ Spec, e *Env) (pipelines.Pipeline, error) {
			return pipelines.OpenManifest(p, e.ModelOptions...)
		},
	})
}

// glyphs is the built-in model's architecture. It is found by name, not registered: it has no
// file to detect until it is built (in the cache, on first use).
var glyphs = Architecture{Name: pipelines.GlyphsName, Open: func(cache string, _ Spec, e *Env) (pipelines.Pipeline, error) {
	return pipelines.OpenGlyphs(cache, e.ModelOptions...)
}}

// resolve finds where model ref lives and which architecture opens it: the built-in glyphs
// model, a configured name, a pulled catalog export, or a path one architecture detects.
func (e *Env) resolve(ref string) (Architecture, string, error) {
	cache, err := models.CacheDir()
	if err != nil {
		return Architecture{}, "", err
	}
	path := ref
	if ref == "" || ref == pipelines.GlyphsName {
		return glyphs, cache, nil
	}
	if p, ok := e.Models[strings.ToLower(ref)]; ok {
		path = p
	} else if ex, err := fetch.Lookup(ref); err == nil && ex.Manifest == "" && ex.Pulled(cache) && sd.IsExport(ex.Dir(cache)) {
		path = ex.Dir(cache) // a pulled export in the Stable Diffusion layout (sd-turbo)
	} else if !sd.IsExport(ref) {
		p, err := fetch.ResolveManifest(ref, cache)
		if err != nil {
			return Architecture{}, "", err
		}
		if p != "" {
			path = p
		}
	}
	archMu.Lock()
	archs := slices.Clone(architectures)
	archMu.Unlock()
	for _, a := range archs {
		if a.Detect(path) {
			return a, path, nil
		}
	}
	switch {
	case strings.HasSuffix(path, ".onnx"):
		return Architecture{}, "", &SpecError{fmt.Errorf("model %s is a bare ONNX file: describe it with a manifest (see examples/mnist-dit-rf.yaml and docs/manifest.md, or run fksteer models inspect %s for a starting one) and pass the manifest", ref, ref)}
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return Architecture{}, "", &UnknownModelError{Ref: ref, why: fmt.Sprintf("model %s is a folder without model_index.json: fksteer reads Stable Diffusion export folders (model_index.json, unet/, text_encoder/, vae_decoder/, ...), the built-in glyphs model and single-file models described by a manifest (.yaml)", ref)}
	}
	return Architecture{}, "", &UnknownModelError{Ref: ref, why: fmt.Sprintf("model %q is neither the built-in glyphs model, a configured or pulled model (fksteer models list), nor a manifest .yaml file that exists", ref)}
}

// UnknownModelError is a model reference that names no model fksteer can open. It is not a
// SpecError: the model may yet be pulled or written, and the same spec then runs.
type UnknownModelError struct {
	Ref string
	why string
}

func (e *UnknownModelError) Error() string { return e.why }

// Model opens the model s names with s's model options, or returns the one already open. The
// pipeline belongs to e: do not close it. With ModelBytes set it may be closed once unused;
// Prepare holds it for the Run's life.
func (e *Env) Model(s Spec) (pipelines.Pipeline, error) {
	m, err := e.model(s, false)
	if err != nil {
		return nil, err
	}
	return m.p, nil
}

// model opens or finds s's model, holding it for a Run when hold is set.
func (e *Env) model(s Spec, hold bool) (*openModel, error) {
	a, path, err := e.resolve(s.Model)
	if err != nil {
		return nil, err
	}
	if set := s.SDOnly(); len(set) > 0 && !a.SDOptions {
		return nil, &SpecError{fmt.Errorf("--%s applies to Stable Diffusion export folders only, and model %s is not one", set[0], s.Model)}
	}
	key := modelKey{arch: a.Name, path: path, scheduler: s.Scheduler, preview: s.PreviewDecoder, width: s.Width, height: s.Height, rescale: s.GuidanceRescale}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tick++
	if m, ok := e.pipes[key]; ok {
		m.used = e.tick
		if hold {
			m.refs++
		}
		return m, nil
	}
	p, err := a.Open(path, s, e)
	if err != nil {
		return nil, err
	}
	// Sized once open: a model's files are known then (the built-in one is built on first use).
	size := diskSize(p.Info().Path)
	if err := e.evict(size); err != nil {
		p.Close()
		return nil, err
	}
	if e.pipes == nil {
		e.pipes = map[modelKey]*openModel{}
	}
	m := &openModel{p: p, bytes: size, used: e.tick}
	if hold {
		m.refs = 1
	}
	e.pipes[key] = m
	return m, nil
}

// evict closes the least recently used models no Run holds until a model of size more bytes
// fits within ModelBytes (or nothing more can be closed: a model larger than the limit still
// opens, alone). e.mu is held.
func (e *Env) evict(more int64) error {
	if e.ModelBytes <= 0 {
		return nil
	}
	for {
		var total int64
		var lru modelKey
		var victim *openModel
		for k, m := range e.pipes {
			total += m.bytes
			if m.refs == 0 && (victim == nil || m.used < victim.used) {
				lru, victim = k, m
			}
		}
		if total+more <= e.ModelBytes || victim == nil {
			return nil
		}
		delete(e.pipes, lru)
		if err := victim.p.Close(); err != nil {
			return fmt.Errorf("closing model %s to make room: %w", victim.p.Info().Name, err)
		}
		if e.Log != nil {
			e.Log.Info("closed a model to make room", "model", victim.p.Info().Name, "bytes", victim.bytes, "limit", e.ModelBytes)
		}
	}
}

// release lets a model a Run held be closed again.
func (e *Env) release(p pipelines.Pipeline) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.pipes {
		if m.p == p && m.refs > 0 {
			m.refs--
			return
		}
	}
}

// diskSize is the size of a model file or of every file of a model folder: what a model holds
// in memory, to a first approximation (its weights).
func diskSize(path string) int64 {
	var n int64
	_ = filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// openSD opens a Stable Diffusion export folder with the spec's options, refusing bad values
// before the folder is read.
func openSD(dir string, s Spec, e *Env) (pipelines.Pipeline, error) {
	if s.Scheduler != "" {
		if _, err := schedule.ParseSchedulerKind(s.Scheduler); err != nil {
			return nil, &SpecError{err}
		}
	}
	for _, d := range []struct {
		key string
		v   int
	}{{"width", s.Width}, {"height", s.Height}} {
		if d.v < 0 || d.v%8 != 0 {
			return nil, &SpecError{fmt.Errorf("--%s %d is not a multiple of 8 (the VAE's scale factor); 0 takes the model's size", d.key, d.v)}
		}
	}
	log := e.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := sd.Open(dir, sd.Options{
		Scheduler: s.Scheduler, Width: s.Width, Height: s.Height,
		GuidanceRescale: s.GuidanceRescale, PreviewDecoder: s.PreviewDecoder, Logger: log,
	}, e.ModelOptions...)
	if err != nil {
		return nil, err // not p: a nil *sd.Pipeline would be a non-nil Pipeline
	}
	return p, nil
}

// Reward builds the reward a spec names, or returns the one already built: a reward's model is
// opened once per Env. The image size lets a reward check its options against it (a
// classifier's crop) now, not at the first scoring step. A spec that cannot be built is a
// *SpecError, except a missing or oversized file, which may be cured without changing the spec.
func (e *Env) Reward(spec string, info pipelines.Info) (rewards.Reward, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.rewards[spec]; ok {
		return r, nil
	}
	r, err := rewards.Parse(spec, rewards.Env{ModelOptions: e.ModelOptions, ImageHeight: info.ImageHeight, ImageWidth: info.ImageWidth})
	if err != nil {
		var pe *fs.PathError
		var big *rewards.TooManyPixelsError
		if errors.As(err, &pe) || errors.As(err, &big) {
			return nil, err
		}
		return nil, &SpecError{err}
	}
	if e.rewards == nil {
		e.rewards = map[string]rewards.Reward{}
	}
	// Concurrent runs share one reward: rewards.Reward promises that concurrent calls are safe.
	e.rewards[spec] = r
	return r, nil
}

// Open is the number of models and rewards e holds open.
func (e *Env) Open() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pipes) + len(e.rewards)
}

// Close closes every model and reward e opened.
func (e *Env) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, r := range e.rewards {
		errs = append(errs, r.Close())
	}
	for _, m := range e.pipes {
		errs = append(errs, m.p.Close())
	}
	e.pipes, e.rewards = nil, nil
	return errors.Join(errs...)
}
