package particles

import (
	"fmt"
	"slices"
)

// Population is G independent groups of K particles each, stored row-major: row r = g*K + k is
// particle k of group g. Groups share one model batch but never exchange particles.
//
// Everything a particle carries is a per-row field, copied together by [Population.Resample]:
//   - X, the batched state, Dim float32 values per row;
//   - LogW, the accumulated log-weight, one float64 per row (reset by resampling, not copied);
//   - any fields registered with [Population.AddFloat32] and [Population.AddFloat64] (reward
//     history, accumulated potentials, a multistep sampler's previous prediction, ...).
//
// Callers read and write X, LogW and field slices in place; they must not reassign or reslice
// them, since the population keeps its own reference to each backing array.
//
// A Population is not safe for concurrent use, except that different goroutines may write
// disjoint rows of its slices while no method is running.
type Population struct {
	// X is the batched state, Rows()*Dim() values: row r is X[r*Dim : (r+1)*Dim].
	X []float32
	// LogW holds the log-weights accumulated since each group's last resampling, one per row.
	// It starts at 0; the caller adds log-potentials to it.
	LogW []float64

	groups, k, dim int

	f32 []field[float32]
	f64 []field[float64]

	// Scratch for one group of the widest field of each type, so Resample can copy rows whose
	// parents are also children without a per-call allocation.
	scratch32 []float32
	scratch64 []float64

	lastStep []int // per group: step of its last resampling, -1 before any
	events   []event
	parents  []int  // K parent slots per event, flattened
	roots    []int  // K, scratch for DistinctRoots
	seen     []bool // K, scratch for DistinctRoots
}

type field[T float32 | float64] struct {
	name  string
	width int
	data  []T
}

type event struct {
	step, group int
}

// Event is one resampling of one group, as recorded in the genealogy.
type Event struct {
	// Step is the sampler step index passed to Resample.
	Step int
	// Group is the group that was resampled.
	Group int
	// Parents[k] is the slot (0..K-1, within the group) whose particle slot k copied. It aliases
	// the population's storage: read it, do not modify it.
	Parents []int
}

// New returns a population of groups groups of k particles with dim float32 state values each.
// X and LogW are zero. It returns an error if any size is not positive.
func New(groups, k, dim int) (*Population, error) {
	if groups <= 0 || k <= 0 || dim <= 0 {
		return nil, fmt.Errorf("particles: population sizes must be positive, got groups=%d k=%d dim=%d", groups, k, dim)
	}
	rows := groups * k
	p := &Population{
		X:         make([]float32, rows*dim),
		LogW:      make([]float64, rows),
		groups:    groups,
		k:         k,
		dim:       dim,
		scratch32: make([]float32, k*dim),
		lastStep:  make([]int, groups),
		roots:     make([]int, k),
		seen:      make([]bool, k),
	}
	for g := range p.lastStep {
		p.lastStep[g] = -1
	}
	return p, nil
}

// Groups returns G, the number of groups.
func (p *Population) Groups() int { return p.groups }

// K returns the number of particles per group.
func (p *Population) K() int { return p.k }

// Dim returns the number of state values per particle.
func (p *Population) Dim() int { return p.dim }

// Rows returns G*K, the number of particles in all groups.
func (p *Population) Rows() int { return p.groups * p.k }

// Row returns the state of row r, a subslice of X.
func (p *Population) Row(r int) []float32 { return p.X[r*p.dim : (r+1)*p.dim : (r+1)*p.dim] }

// GroupX returns the states of group g's K rows, a subslice of X.
func (p *Population) GroupX(g int) []float32 {
	n := p.k * p.dim
	return p.X[g*n : (g+1)*n : (g+1)*n]
}

// GroupLogW returns group g's K log-weights, a subslice of LogW; pass it to [ESS] and
// [Scheme.Resample].
func (p *Population) GroupLogW(g int) []float64 {
	return p.LogW[g*p.k : (g+1)*p.k : (g+1)*p.k]
}

// AddFloat32 registers a per-row field of width float32 values, zero-initialised, and returns its
// backing slice of Rows()*width values (row r at [r*width, (r+1)*width)). From then on every
// Resample copies it with the particle.
//
// It panics if name is empty or already registered (in either type), or width is not positive:
// fields are fixed when the program is written, like flags.
func (p *Population) AddFloat32(name string, width int) []float32 {
	p.checkNew(name, width)
	f := field[float32]{name: name, width: width, data: make([]float32, p.Rows()*width)}
	p.f32 = append(p.f32, f)
	if n := p.k * width; n > len(p.scratch32) {
		p.scratch32 = make([]float32, n)
	}
	return f.data
}

// AddFloat64 is [Population.AddFloat32] for float64 fields.
func (p *Population) AddFloat64(name string, width int) []float64 {
	p.checkNew(name, width)
	f := field[float64]{name: name, width: width, data: make([]float64, p.Rows()*width)}
	p.f64 = append(p.f64, f)
	if n := p.k * width; n > len(p.scratch64) {
		p.scratch64 = make([]float64, n)
	}
	return f.data
}

func (p *Population) checkNew(name string, width int) {
	if name == "" {
		panic("particles: field name is empty")
	}
	if width <= 0 {
		panic(fmt.Sprintf("particles: field %q: width %d is not positive", name, width))
	}
	if p.Float32(name) != nil || p.Float64(name) != nil {
		panic(fmt.Sprintf("particles: field %q registered twice", name))
	}
}

// Float32 returns the backing slice of the float32 field registered as name, or nil if there is
// none.
func (p *Population) Float32(name string) []float32 {
	for _, f := range p.f32 {
		if f.name == name {
			return f.data
		}
	}
	return nil
}

// Float64 returns the backing slice of the float64 field registered as name, or nil if there is
// none.
func (p *Population) Float64(name string) []float64 {
	for _, f := range p.f64 {
		if f.name == name {
			return f.data
		}
	}
	return nil
}

// Resample replaces group's particles by copies of their parents: slot k of the group becomes a
// copy of slot parents[k] (indices within the group, 0..K-1, as [Scheme.Resample] writes them on
// [Population.GroupLogW]). X and every registered field are copied through scratch, so a slot may
// be a parent and a child at once. The group's LogW is then reset to 0, and the event (step,
// group, parents) is appended to the genealogy.
//
// step is the sampler's step index; a group's resamplings must have strictly increasing,
// non-negative steps. The slots' random streams are not part of the population: a child keeps
// drawing from its own slot's stream (see [Streams]).
//
// It returns an error, and leaves the population unchanged, if group is out of range,
// len(parents) != K, a parent is out of range, or step is not after the group's previous one.
// It does not allocate unless the genealogy outgrows the capacity reserved with
// [Population.ReserveEvents].
func (p *Population) Resample(step, group int, parents []int) error {
	if group < 0 || group >= p.groups {
		return fmt.Errorf("particles: resample: group %d out of range [0, %d)", group, p.groups)
	}
	if len(parents) != p.k {
		return fmt.Errorf("particles: resample: %d parents for %d particles", len(parents), p.k)
	}
	for k, a := range parents {
		if a < 0 || a >= p.k {
			return fmt.Errorf("particles: resample: parent %d of slot %d out of range [0, %d)", a, k, p.k)
		}
	}
	if step < 0 || step <= p.lastStep[group] {
		return fmt.Errorf("particles: resample: step %d of group %d is not after its previous resampling at step %d", step, group, p.lastStep[group])
	}

	gather(p.X, p.dim, group, parents, p.scratch32)
	for _, f := range p.f32 {
		gather(f.data, f.width, group, parents, p.scratch32)
	}
	for _, f := range p.f64 {
		gather(f.data, f.width, group, parents, p.scratch64)
	}
	clear(p.GroupLogW(group))

	p.lastStep[group] = step
	p.events = append(p.events, event{step: step, group: group})
	p.parents = append(p.parents, parents...)
	return nil
}

// gather rewrites group g's block of a field of the given width so that slot k holds what slot
// parents[k] held. It reads every parent before writing any child, via scratch.
func gather[T float32 | float64](data []T, width, g int, parents []int, scratch []T) {
	n := len(parents) * width
	block := data[g*n : (g+1)*n]
	s := scratch[:n]
	for k, a := range parents {
		copy(s[k*width:(k+1)*width], block[a*width:(a+1)*width])
	}
	copy(block, s)
}

// ReserveEvents makes room for n more resampling events, so that the next n calls to Resample
// do not allocate. A loop that knows its schedule reserves G times its number of resampling
// steps up front.
func (p *Population) ReserveEvents(n int) {
	p.events = slices.Grow(p.events, n)
	p.parents = slices.Grow(p.parents, n*p.k)
}

// NumEvents returns the number of resampling events recorded so far, all groups together.
func (p *Population) NumEvents() int { return len(p.events) }

// Event returns the i-th recorded resampling event, in the order they happened
// (0 <= i < NumEvents()).
func (p *Population) Event(i int) Event {
	e := p.events[i]
	off := i * p.k
	return Event{Step: e.step, Group: e.group, Parents: p.parents[off : off+p.k : off+p.k]}
}

// Lineage writes into dst the ancestry of the particle now in row: dst[s] is the row that held
// its ancestor during step s, before any resampling at step s. That is the row whose step-s
// model evaluation, reward and transition belong to this particle's trajectory when the loop
// resamples at the end of a step (after stepping); a loop that resamples before stepping finds
// step s's transition in row dst[s+1] (row itself for the last step). For steps after the
// group's last resampling
// dst[s] is row itself; dst[0] is its root, the particle it descends from at the start.
//
// len(dst) is the number of steps to report; resamplings at steps >= len(dst) are still traced
// through. It panics if row is out of range.
func (p *Population) Lineage(row int, dst []int) {
	g, a := row/p.k, row%p.k
	if row < 0 || g >= p.groups {
		panic(fmt.Sprintf("particles: lineage: row %d out of range [0, %d)", row, p.Rows()))
	}
	e := len(p.events) - 1
	for s := len(dst) - 1; s >= 0; s-- {
		// Undo the group's resamplings at steps >= s, newest first.
		for ; e >= 0; e-- {
			ev := p.events[e]
			if ev.group != g {
				continue
			}
			if ev.step < s {
				break
			}
			a = p.parents[e*p.k+a]
		}
		dst[s] = g*p.k + a
	}
}

// Roots writes into dst, for each slot k of group, the row of the particle it descends from at
// the start, before the group's first resampling. It panics if len(dst) != K or group is out of
// range.
func (p *Population) Roots(group int, dst []int) {
	if group < 0 || group >= p.groups {
		panic(fmt.Sprintf("particles: roots: group %d out of range [0, %d)", group, p.groups))
	}
	if len(dst) != p.k {
		panic(fmt.Sprintf("particles: roots: len(dst) = %d, want K = %d", len(dst), p.k))
	}
	for k := range dst {
		dst[k] = k
	}
	for e := len(p.events) - 1; e >= 0; e-- {
		if p.events[e].group != group {
			continue
		}
		par := p.parents[e*p.k : (e+1)*p.k]
		for k, a := range dst {
			dst[k] = par[a]
		}
	}
	for k := range dst {
		dst[k] += group * p.k
	}
}

// DistinctRoots returns how many different initial particles group's current particles descend
// from: K before any resampling, 1 when one lineage has taken over. It panics if group is out of
// range.
func (p *Population) DistinctRoots(group int) int {
	p.Roots(group, p.roots)
	clear(p.seen)
	n := 0
	for _, r := range p.roots {
		if k := r - group*p.k; !p.seen[k] {
			p.seen[k] = true
			n++
		}
	}
	return n
}
