// Package rewards scores images: a batch of images (all K particles of a prompt at once) plus the
// prompt in, one score per image out. Rewards are what FK steering turns into potentials and what
// fine-tuning datasets record.
//
// Rewards are built from specs such as `classifier:model=mnist.onnx,target=3` or
// `color:target=#cc2222` by [Parse]. rewards knows nothing about particles or steering.
package rewards

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/internal/keys"
	"github.com/fksteer/fksteer/models"
)

// Reward scores a batch of images.
type Reward interface {
	// Name identifies the reward in outputs, e.g. "classifier".
	Name() string
	// Score writes one score per image into dst (len(dst) == imgs.N). prompt is the prompt the
	// images were generated for. A score may be NaN or ±Inf where the reward cannot judge an
	// image; callers decide what that means (steering gives such a particle weight zero).
	Score(ctx context.Context, imgs models.Images, prompt string, dst []float64) error
	// Close releases the reward's models.
	Close() error
}

// Env is what reward constructors may use besides their own options.
type Env struct {
	// Session options for rewards that run ONNX models.
	ModelOptions []models.Option
}

// Options are a reward spec's key=value pairs. Constructors read them through the typed getters,
// and Parse rejects any key no getter asked for, naming the closest valid one.
type Options struct {
	reward string
	values map[string]string
	seen   map[string]bool
}

// String returns option key as a string, or def when absent.
func (o *Options) String(key, def string) string {
	o.seen[key] = true
	if v, ok := o.values[key]; ok {
		return v
	}
	return def
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

// Has reports whether the spec set key.
func (o *Options) Has(key string) bool {
	o.seen[key] = true
	_, ok := o.values[key]
	return ok
}

func (o *Options) unused() error {
	var valid, unknown []string
	for k := range o.seen {
		valid = append(valid, k)
	}
	for k := range o.values {
		if !o.seen[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	sort.Strings(valid)
	if s := keys.Closest(unknown[0], valid); s != "" {
		return fmt.Errorf("reward %s: unknown option %q (did you mean %q?)", o.reward, unknown[0], s)
	}
	return fmt.Errorf("reward %s: unknown option %q (valid: %s)", o.reward, unknown[0], strings.Join(valid, ", "))
}

// Constructor builds a reward from its options.
type Constructor func(opts *Options, env Env) (Reward, error)

var registry = map[string]Constructor{}

// Register makes a reward constructible by name. It is called from init functions.
func Register(name string, c Constructor) {
	if _, dup := registry[name]; dup {
		panic("rewards: duplicate registration of " + name)
	}
	registry[name] = c
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

// Parse builds a reward from a spec `name` or `name:key=value,key=value`.
func Parse(spec string, env Env) (Reward, error) {
	name, rest, _ := strings.Cut(strings.TrimSpace(spec), ":")
	ctor, ok := registry[name]
	if !ok {
		hint := ""
		if s := keys.Closest(name, Names()); s != "" {
			hint = fmt.Sprintf("did you mean %q? ", s)
		}
		return nil, fmt.Errorf("unknown reward %q (%svalid: %s)", name, hint, strings.Join(Names(), ", "))
	}
	opts := &Options{reward: name, values: map[string]string{}, seen: map[string]bool{}}
	if rest != "" {
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("reward %s: option %q is not key=value", name, kv)
			}
			opts.values[k] = strings.TrimSpace(v)
		}
	}
	r, err := ctor(opts, env)
	if err != nil {
		// A misspelt key usually explains a missing-option error: name the typo instead.
		if uerr := opts.unused(); uerr != nil {
			return nil, uerr
		}
		return nil, err
	}
	if err := opts.unused(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
