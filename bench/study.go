package bench

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/sampler"
)

// What the scaling studies (Steer on the MNIST DiT, GlyphsTV on the glyphs model) share: the
// grid of cells, a method at a multiple of the base NFE, and the spec of a cell's runs.

// DeterministicSampler is the step rule of the noise and random cells: noise-space search
// solves each initial noise deterministically, so they cannot run the studies' stochastic
// sampler (an override's sampler key still applies to them).
const DeterministicSampler = "euler"

// cell is one row of a study: a method at a multiple of the base NFE.
type cell struct {
	m    sampler.Method
	mult int
}

func (cl cell) String() string { return fmt.Sprintf("%s at %dx", cl.m, cl.mult) }

// grid is a study's methods and budgets (multiples of the base NFE).
type grid struct {
	methods []sampler.Method
	budgets []int
}

// check refuses budgets below 1 and repeated methods or budgets, naming the flags.
func (g grid) check() error {
	bad := func(format string, args ...any) error { return &generation.SpecError{Err: fmt.Errorf(format, args...)} }
	if len(g.budgets) == 0 {
		return bad("--budgets: want at least one multiple of the base NFE")
	}
	for i, b := range g.budgets {
		if b < 1 {
			return bad("--budgets: want multiples of the base NFE of at least 1, got %d", b)
		}
		if slices.Contains(g.budgets[:i], b) {
			return bad("--budgets: %d is listed twice", b)
		}
	}
	for i, m := range g.methods {
		if slices.Contains(g.methods[:i], m) {
			return bad("--methods: %s is listed twice", m)
		}
	}
	return nil
}

// cells lists the cells in the order they run: base at 1x (the reference), then every other
// method at each budget, the smallest budgets first, so that an interrupted study has measured
// every method at some budget. No methods means every method (sampler.Methods).
func (g grid) cells() []cell {
	methods := g.methods
	if len(methods) == 0 {
		methods = sampler.Methods()
	}
	var cells []cell
	if slices.Contains(methods, sampler.Base) {
		cells = append(cells, cell{sampler.Base, 1})
	}
	budgets := slices.Clone(g.budgets)
	slices.Sort(budgets)
	for _, b := range budgets {
		for _, m := range methods {
			if m != sampler.Base {
				cells = append(cells, cell{m, b})
			}
		}
	}
	return cells
}

// methodOrder sorts rows by method (in sampler.Methods order), then by budget.
func methodOrder(m sampler.Method) int { return slices.Index(sampler.Methods(), m) }

// sortRows orders rows by method, then budget multiple.
func sortRows[R any](rows []R, key func(R) cell) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := key(rows[i]), key(rows[j])
		if a.m != b.m {
			return methodOrder(a.m) < methodOrder(b.m)
		}
		return a.mult < b.mult
	})
}

// unit is the NFE of one base image of s on a model described by info (a zero Info stands for
// a model whose defaults s overrides): its steps, twice over where classifier-free guidance
// runs. A cell at multiple b is budgeted b*unit NFE per image.
func unit(s generation.Spec, info pipelines.Info) int {
	cfg := sampler.Config{Steps: info.Defaults.Steps, Guidance: info.Defaults.Guidance, Method: sampler.Base, Particles: 1}
	if s.Steps > 0 {
		cfg.Steps = s.Steps
	}
	if s.Guidance != nil {
		cfg.Guidance = *s.Guidance
	}
	cfg.CondOpts.Class = s.Class
	return cfg.Cost(info)
}

// cellSpec is base's spec for cell cl at u NFE per multiple: the method sized by its budget
// (Particles left to it), noise and random on DeterministicSampler, then the method's
// override, if any.
func cellSpec(base generation.Spec, cl cell, u int, overrides Overrides) generation.Spec {
	s := base
	s.Method, s.Particles, s.Budget = string(cl.m), 0, cl.mult*u
	if cl.m == sampler.Noise || cl.m == sampler.Random {
		zero := 0.0
		s.Sampler, s.Eta = DeterministicSampler, &zero
	}
	if o, ok := overrides[cl.m]; ok {
		s = overlay(s, o)
	}
	return s
}

// overlay returns s with every key over sets (its non-zero fields) replaced by over's.
func overlay(s, over generation.Spec) generation.Spec {
	dst, src := reflect.ValueOf(&s).Elem(), reflect.ValueOf(over)
	for i := range src.NumField() {
		if f := src.Field(i); !f.IsZero() {
			dst.Field(i).Set(f)
		}
	}
	return s
}

// studyKeys are the spec keys a study sets in every cell, which an override may not change.
var studyKeys = []string{"model", "prompt", "steps", "method", "particles", "num-images", "seed", "reward", "select", "budget"}

// Overrides sets spec keys for one method's cells, over the study's base spec: the keys an
// override sets are its non-zero fields. It is the --set flag's value (a pflag.Value).
type Overrides map[sampler.Method]generation.Spec

// check refuses an override that sets a key the study owns.
func (o Overrides) check() error {
	for _, m := range sampler.Methods() {
		for k := range o[m].Map() {
			if slices.Contains(studyKeys, k) {
				return &generation.SpecError{Err: fmt.Errorf("--set %s:%s: the study sets %s itself (it cannot be set per method: %s)", m, k, k, strings.Join(studyKeys, ", "))}
			}
		}
	}
	return nil
}

// String writes o as --set reads it, one METHOD:key=value,... per method in sampler.Methods
// order, keys sorted, e.g. "noise:neighbours=2"; "" when o sets nothing.
func (o Overrides) String() string {
	var parts []string
	for _, m := range sampler.Methods() {
		kv := o[m].Map()
		if len(kv) == 0 {
			continue
		}
		keys := slices.Sorted(maps.Keys(kv))
		for i, k := range keys {
			keys[i] = fmt.Sprintf("%s=%v", k, kv[k])
		}
		parts = append(parts, string(m)+":"+strings.Join(keys, ","))
	}
	return strings.Join(parts, " ")
}

// Set reads one --set value, METHOD:key=value[,key=value...] in fksteer's configuration keys
// (as a spec file writes them), over what o already sets for the method.
func (o *Overrides) Set(v string) error {
	name, pairs, ok := strings.Cut(v, ":")
	if !ok || pairs == "" {
		return fmt.Errorf("%q: want METHOD:key=value[,key=value...], e.g. dts:lambda=4", v)
	}
	m, err := sampler.ParseMethod(strings.TrimSpace(name))
	if err != nil {
		return fmt.Errorf("%q: %w", v, err)
	}
	var doc strings.Builder
	for _, kv := range strings.Split(pairs, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("%q: %q is not key=value", v, kv)
		}
		fmt.Fprintf(&doc, "%s: %s\n", strings.TrimSpace(k), strings.TrimSpace(val))
	}
	s, err := generation.DecodeSpec([]byte(doc.String()))
	if err != nil {
		return fmt.Errorf("%q: %w", v, err)
	}
	if *o == nil {
		*o = Overrides{}
	}
	(*o)[m] = overlay((*o)[m], s)
	return nil
}

// Type names the flag's value in help texts.
func (o *Overrides) Type() string { return "METHOD_SETTINGS" }

// Rate is a success count out of Runs.
type Rate struct{ Successes, Runs int }

// P is the success rate (NaN without runs).
func (r Rate) P() float64 {
	if r.Runs == 0 {
		return math.NaN()
	}
	return float64(r.Successes) / float64(r.Runs)
}

// Wilson returns the 95 % Wilson score interval of the success rate.
func (r Rate) Wilson() (lo, hi float64) {
	s, n := r.Successes, r.Runs
	if n == 0 {
		return 0, 1
	}
	const z = 1.959964
	p := float64(s) / float64(n)
	den := 1 + z*z/float64(n)
	centre := (p + z*z/(2*float64(n))) / den
	half := z * math.Sqrt(p*(1-p)/float64(n)+z*z/(4*float64(n)*float64(n))) / den
	return max(0, centre-half), min(1, centre+half)
}

// add returns the rate of both counts together.
func (r Rate) add(o Rate) Rate { return Rate{r.Successes + o.Successes, r.Runs + o.Runs} }

// MeanPairwiseDistance is the mean Euclidean (L2) distance between two images of imgs, over
// every pair, in the images' own values (pixels in [0, 1]): how far apart the samples a run
// returns are. NaN for fewer than two images.
func MeanPairwiseDistance(imgs pixels.Images) float64 {
	if imgs.N < 2 {
		return math.NaN()
	}
	var sum float64
	for i := range imgs.N {
		a := imgs.At(i)
		for j := i + 1; j < imgs.N; j++ {
			var d float64
			for k, v := range imgs.At(j) {
				e := float64(v - a[k])
				d += e * e
			}
			sum += math.Sqrt(d)
		}
	}
	return sum / float64(imgs.N*(imgs.N-1)/2)
}
