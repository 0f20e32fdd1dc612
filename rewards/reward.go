// Package rewards scores images: a batch of images (all K particles of a prompt at once) plus the
// prompt in, one score per image out. Rewards are what FK steering turns into potentials and what
// fine-tuning datasets record.
//
// Rewards are built from specs by [Parse]: a registered name with options, such as
// `classifier:model=mnist.onnx,target=3`, `ocr` or `dino:ref=cat.png`, or a weighted sum of them
// such as `0.7*preference:model=pick.onnx,tokenizer=tok+0.3*ocr` (a [Composite], whose parts
// are scored concurrently). docs/rewards.md lists every reward and option. Every reward that
// runs ONNX models loads its sessions once, when it is built, and runs all the images of a Score
// call in one batch. Every reward of this package is safe for concurrent use, and concurrent
// calls to one reward run in parallel, each on model calls of its own (a [models.CallPool] per
// session). rewards knows nothing about particles or steering.
package rewards

import (
	"context"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/internal/keys"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

// Reward scores a batch of images. Implementations are safe for concurrent use: batch workers
// share one reward (every reward in this package runs concurrent calls in parallel, none
// sharing a model call or a scratch buffer with another).
type Reward interface {
	// Name identifies the reward in outputs, e.g. "classifier".
	Name() string
	// Score writes one score per image into dst (len(dst) == imgs.N). prompt is the prompt the
	// images were generated for. A batch that is malformed (see [pixels.Images.Validate]) or
	// whose length disagrees with dst is an error. A score may be NaN or ±Inf where the reward
	// cannot judge an image; callers decide what that means (steering gives such a particle
	// weight zero, and stops with an error when no particle of a group has a finite score).
	Score(ctx context.Context, imgs pixels.Images, prompt string, dst []float64) error
	// Close releases the reward's models.
	Close() error
}

// PartScore is one named component of an image's reward, as [Explain] reports it.
type PartScore struct {
	// Name is the part's reward name ("ocr", "classifier", ...); Weight its weight in the
	// total (1 for a reward that is not a composite).
	Name   string
	Weight float64
	// Score is the part's own score, before weighting.
	Score float64
	// Text is the text the part read in the image, and HasText tells that the part reads text
	// (OCR), so that an empty Text means "read nothing" rather than "not applicable".
	Text    string
	HasText bool
}

// Explainer is implemented by rewards whose scores are worth breaking down: a [Composite]
// reports each weighted part, the OCR reward the text it read. Explain is Score that also
// writes image i's breakdown into parts[i] (len(parts) == imgs.N), reusing each slice's
// capacity; parts may be nil to skip the breakdown.
type Explainer interface {
	Reward
	Explain(ctx context.Context, imgs pixels.Images, prompt string, dst []float64, parts [][]PartScore) error
}

// Explain scores imgs with r and breaks every score down: through [Explainer] where r implements
// it, and otherwise as a single part (r itself, weight 1).
func Explain(ctx context.Context, r Reward, imgs pixels.Images, prompt string) ([]float64, [][]PartScore, error) {
	if err := imgs.Validate(); err != nil {
		return nil, nil, err
	}
	scores := make([]float64, imgs.N)
	parts := make([][]PartScore, imgs.N)
	if e, ok := r.(Explainer); ok {
		if err := e.Explain(ctx, imgs, prompt, scores, parts); err != nil {
			return nil, nil, err
		}
		return scores, parts, nil
	}
	if err := r.Score(ctx, imgs, prompt, scores); err != nil {
		return nil, nil, err
	}
	for i, s := range scores {
		parts[i] = []PartScore{{Name: r.Name(), Weight: 1, Score: s}}
	}
	return scores, parts, nil
}

// Env is what reward constructors may use besides their own options.
type Env struct {
	// Session options for rewards that run ONNX models.
	ModelOptions []models.Option
	// ModelDir is the folder where rewards look for the model files an option does not name
	// (such as the OCR reward's PaddleOCR models); empty means [DefaultModelDir].
	ModelDir string
	// ImageHeight and ImageWidth are the size of the images the reward will score, where the
	// caller knows it (0: unknown, or images of several sizes). Rewards check their options
	// against it when they are built (the classifier's crop=), so a spec that cannot fit the
	// images fails before any work; where it is unknown they check on each Score.
	ImageHeight, ImageWidth int
}

// Options are a reward spec's key=value pairs. Constructors read them through the typed getters.
// Parse rejects a key the reward does not declare (see [Register]) before the constructor runs,
// naming the closest valid one, so that a constructor's own error (a missing or invalid option)
// always reaches the user as itself; and it rejects any key given more than once that was not
// read with [Options.Strings].
type Options struct {
	reward string
	values map[string][]string
	seen   map[string]bool
	multi  map[string]bool
	// keys are the reward's declared keys (nil: not declared, see Register); undeclared
	// records a key a getter read that is not among them.
	keys       map[string]bool
	undeclared string
}

func newOptions(reward string) *Options {
	return &Options{reward: reward, values: map[string][]string{}, seen: map[string]bool{}, multi: map[string]bool{}}
}

// read marks key as read by the constructor.
func (o *Options) read(key string) {
	o.seen[key] = true
	if o.keys != nil && !o.keys[key] && o.undeclared == "" {
		o.undeclared = key
	}
}

// String returns option key as a string, or def when absent.
func (o *Options) String(key, def string) string {
	o.read(key)
	if v := o.values[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return def
}

// Strings returns every value of a key that may be repeated (`ref=a.png,ref=b.png`), in order;
// nil when absent.
func (o *Options) Strings(key string) []string {
	o.read(key)
	o.multi[key] = true
	return o.values[key]
}

// Float returns option key as a float, or def when absent.
func (o *Options) Float(key string, def float64) (float64, error) {
	s := o.String(key, "")
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("reward %s: option %s=%q is not a number", o.reward, key, s)
	}
	return v, nil
}

// Int returns option key as an integer, or def when absent.
func (o *Options) Int(key string, def int) (int, error) {
	s := o.String(key, "")
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("reward %s: option %s=%q is not an integer", o.reward, key, s)
	}
	return v, nil
}

// Bool returns option key as a boolean (true/false, 1/0, yes/no), or def when absent.
func (o *Options) Bool(key string, def bool) (bool, error) {
	switch s := strings.ToLower(o.String(key, "")); s {
	case "":
		return def, nil
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	default:
		return false, fmt.Errorf("reward %s: option %s=%q is not true or false", o.reward, key, s)
	}
}

// Has reports whether the spec set key.
func (o *Options) Has(key string) bool {
	o.read(key)
	_, ok := o.values[key]
	return ok
}

// unknown returns an error for the first key (in sorted order) that the spec sets and that is
// neither declared nor read, naming the closest valid key.
func (o *Options) unknown() error {
	valid := map[string]bool{}
	for k := range o.keys {
		valid[k] = true
	}
	for k := range o.seen {
		valid[k] = true
	}
	var unknown []string
	for k := range o.values {
		if !valid[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	names := slices.Sorted(maps.Keys(valid))
	if s := keys.Closest(unknown[0], names); s != "" {
		return fmt.Errorf("reward %s: unknown option %q (did you mean %q?)", o.reward, unknown[0], s)
	}
	if len(names) == 0 {
		return fmt.Errorf("reward %s: unknown option %q (it takes no options)", o.reward, unknown[0])
	}
	return fmt.Errorf("reward %s: unknown option %q (valid: %s)", o.reward, unknown[0], strings.Join(names, ", "))
}

// repeated returns an error for a key given more than once that the constructor did not read
// as a list ([Options.Strings]).
func (o *Options) repeated() error {
	for _, k := range slices.Sorted(maps.Keys(o.values)) {
		if v := o.values[k]; len(v) > 1 && !o.multi[k] {
			return fmt.Errorf("reward %s: option %s is given %d times; it takes one value", o.reward, k, len(v))
		}
	}
	return nil
}

// Constructor builds a reward from its options.
type Constructor func(opts *Options, env Env) (Reward, error)

// registered is a constructor and the option keys it reads.
type registered struct {
	ctor Constructor
	keys map[string]bool // nil: not declared
}

var registry = map[string]registered{}

// Register makes a reward constructible by name. It is called from init functions.
//
// keys lists every option key the constructor may read ("provider" is implied: Parse handles
// it). With keys declared, Parse refuses any other key before calling the constructor, so a
// typo is reported as such even where the constructor would have stopped earlier on a missing
// option, and a constructor's error is never mistaken for a typo; a constructor that reads an
// undeclared key is a bug that Parse reports. Without keys, the keys are those the
// constructor reads, which Parse can check only once it has succeeded.
func Register(name string, c Constructor, keys ...string) {
	if _, dup := registry[name]; dup {
		panic("rewards: duplicate registration of " + name)
	}
	r := registered{ctor: c}
	if len(keys) > 0 {
		r.keys = map[string]bool{"provider": true}
		for _, k := range keys {
			r.keys[k] = true
		}
	}
	registry[name] = r
}

// Names lists the registered rewards.
func Names() []string {
	out := make([]string, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Parse builds a reward from a spec. The grammar (docs/rewards.md):
//
//	spec   = term { "+" term }
//	term   = [ weight "*" ] reward
//	reward = name [ ":" key "=" value { "," key "=" value } ]
//
// A single term without a weight is that reward itself; anything else is a [Composite] of the
// terms, weight 1 where none is written. A "+" starts a new term only where a registered reward
// name or a weight follows it, so option values may contain "+" (a path, 1e+3).
// On error nothing stays open.
func Parse(spec string, env Env) (Reward, error) {
	terms := splitTerms(spec)
	// Every weight is read before any reward is built, so a bad weight costs no model load.
	weights := make([]float64, len(terms))
	rests := make([]string, len(terms))
	for i, t := range terms {
		w, rest, weighted, err := cutWeight(t)
		if err != nil {
			return nil, err
		}
		if len(terms) == 1 && !weighted {
			return parseOne(rest, env)
		}
		if !weighted {
			w = 1
		}
		weights[i], rests[i] = w, rest
	}
	parts := make([]Reward, 0, len(terms))
	fail := func(err error) (Reward, error) {
		for _, p := range parts {
			p.Close()
		}
		return nil, err
	}
	for _, rest := range rests {
		r, err := parseOne(rest, env)
		if err != nil {
			return fail(err)
		}
		parts = append(parts, r)
	}
	c, err := NewComposite(parts, weights)
	if err != nil {
		return fail(err)
	}
	return c, nil
}

// weightPattern matches what is written as a weight: a decimal number, or NaN and infinities
// (which ParseFloat reads, and which are refused with a message rather than taken for part of
// a reward name).
const weightPattern = `[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?))`

var (
	// termStart matches the start of a term: an optional weight, then a reward name followed by
	// its options, another term or the end.
	termStart    = regexp.MustCompile(`^\s*(` + weightPattern + `\s*\*)?\s*([A-Za-z][\w-]*)\s*(?::|\+|$)`)
	weightedTerm = regexp.MustCompile(`^\s*(` + weightPattern + `)\s*\*\s*(.*)$`)
	// mantissa matches the start of a weight written with an exponent up to its "e": the "+"
	// of "1e+3*ocr" belongs to the number, not between terms.
	mantissa = regexp.MustCompile(`^\s*[-+]?(?:\d+\.?\d*|\.\d+)[eE]$`)
)

// splitTerms cuts a spec at every "+" that starts a term: one with a weight, or one naming a
// registered reward.
func splitTerms(spec string) []string {
	var terms []string
	start := 0
	for i := 0; i < len(spec); i++ {
		if spec[i] != '+' || i+1 < len(spec) && spec[i+1] >= '0' && spec[i+1] <= '9' && mantissa.MatchString(spec[start:i]) {
			continue
		}
		m := termStart.FindStringSubmatch(spec[i+1:])
		if m == nil || m[1] == "" && registry[m[2]].ctor == nil {
			continue
		}
		terms = append(terms, spec[start:i])
		start = i + 1
	}
	return append(terms, spec[start:])
}

// cutWeight splits "0.7*ocr:..." into 0.7 and "ocr:..."; weighted is false for a term without
// a weight. A weight that is not a finite number (nan, inf, 1e999) is an error.
func cutWeight(term string) (w float64, rest string, weighted bool, err error) {
	m := weightedTerm.FindStringSubmatch(term)
	if m == nil {
		return 0, term, false, nil
	}
	w, err = strconv.ParseFloat(m[1], 64)
	if err != nil || math.IsNaN(w) || math.IsInf(w, 0) {
		return 0, term, false, fmt.Errorf("reward weight %q in %q is not a finite number: write weights as numbers such as 0.7 or -1 (0.7*ocr+0.3*color:target=#ffffff)", m[1], strings.TrimSpace(term))
	}
	return w, m[2], true, nil
}

// parseOne builds a single reward from `name` or `name:key=value,key=value`. Its errors, in
// order: an unknown reward, an option that is not key=value, a key the reward does not declare
// (naming the closest valid one), a bad provider=, then the constructor's own error about a
// missing or invalid option, then an option given twice.
func parseOne(spec string, env Env) (Reward, error) {
	name, rest, _ := strings.Cut(strings.TrimSpace(spec), ":")
	name = strings.TrimSpace(name)
	reg, ok := registry[name]
	if !ok {
		// An unknown name after a "+" is not split off as a term; name it alone.
		name = name[strings.LastIndex(name, "+")+1:]
		if w, r, ok := strings.Cut(name, "*"); ok && registry[strings.TrimSpace(r)].ctor != nil {
			return nil, fmt.Errorf("reward weight %q in %q is not a number: write weights as numbers such as 0.7 or -1 (0.7*ocr+0.3*color:target=#ffffff)", strings.TrimSpace(w), name)
		}
		hint := ""
		if s := keys.Closest(name, Names()); s != "" {
			hint = fmt.Sprintf("did you mean %q? ", s)
		}
		return nil, fmt.Errorf("unknown reward %q (%svalid: %s; combine rewards as 0.7*a+0.3*b)", name, hint, strings.Join(Names(), ", "))
	}
	opts := newOptions(name)
	opts.keys = reg.keys
	if strings.TrimSpace(rest) != "" {
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("reward %s: option %q is not key=value", name, kv)
			}
			opts.values[k] = append(opts.values[k], strings.TrimSpace(v))
		}
	}
	// With declared keys a typo is found before the constructor runs, whatever the
	// constructor would have stopped on first; the constructor's errors then speak for
	// themselves.
	if reg.keys != nil {
		if err := opts.unknown(); err != nil {
			return nil, err
		}
	}
	if v, ok := opts.values["provider"]; ok {
		// Every reward takes provider=NAME: its models run there instead of where the
		// denoiser runs (a small classifier is often faster on the CPU than across a bus).
		opts.seen["provider"] = true
		p, err := models.ParseProvider(v[len(v)-1])
		if err != nil || p == models.Auto {
			return nil, fmt.Errorf("reward %s: option provider=%s: want cpu, webgpu, cuda, ... (auto is for the whole run, not one reward)", name, v[len(v)-1])
		}
		env.ModelOptions = append(slices.Clone(env.ModelOptions), models.WithProvider(string(p), 0), func(o *models.Options) error {
			if p == models.CPU {
				o.ProviderOptions = nil // the run's options are for its accelerator
			}
			return nil
		})
	}
	r, err := reg.ctor(opts, env)
	if opts.undeclared != "" {
		if err == nil {
			r.Close()
		}
		return nil, fmt.Errorf("reward %s reads option %q, which its Register call does not declare (a bug in fksteer: please report it)", name, opts.undeclared)
	}
	if err != nil {
		return nil, err
	}
	err = opts.unknown()
	if err == nil {
		err = opts.repeated()
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
