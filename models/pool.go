package models

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ErrPoolClosed is what [CallPool.Get] returns once the pool is closed.
var ErrPoolClosed = errors.New("models: the call pool is closed")

// Prepared is what a [CallPool] keeps: a [*Call], or a caller's type that holds one together
// with what it looked up or wrote for it (input buffers, inputs that never change).
type Prepared interface {
	// Close releases the prepared call.
	Close() error
}

// CallPool keeps prepared calls idle between uses, by key, so that the steps of a run, and
// runs on several goroutines, reuse them instead of preparing new ones. The key stands for the
// batch shape a call was prepared for: the row count where nothing else varies, or
// [Shapes.Key]. A call is out with one user from Get until Put, so no two goroutines ever share
// one; the pool itself is safe for concurrent use, and the zero value is ready (with no limit).
type CallPool[K comparable, V Prepared] struct {
	// Limit bounds how many idle calls the pool keeps, across all keys: past it, Put closes the
	// call idle the longest. Zero keeps every one. Set it before the first Get.
	Limit int

	mu     sync.Mutex
	idle   []pooled[K, V] // oldest first
	closed bool
}

type pooled[K comparable, V Prepared] struct {
	key K
	v   V
}

// Get hands out an idle call kept for key (the one Put last), or, if there is none, what
// prepare returns; prepare runs without the pool's lock, so a slow preparation holds up no
// other user. The caller owns the call until it gives it to Put. An error of prepare is
// returned as it is and leaves the pool unchanged; after Close, Get returns [ErrPoolClosed]
// without preparing anything.
func (p *CallPool[K, V]) Get(key K, prepare func() (V, error)) (V, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		var zero V
		return zero, ErrPoolClosed
	}
	for i := len(p.idle) - 1; i >= 0; i-- {
		if p.idle[i].key == key {
			v := p.idle[i].v
			p.idle = slices.Delete(p.idle, i, i+1)
			p.mu.Unlock()
			return v, nil
		}
	}
	p.mu.Unlock()
	return prepare()
}

// Put takes back a call that Get handed out for key, whatever its last Run returned: a failed
// or cancelled Run leaves a [Call] ready for the next. Past the Limit it closes the call idle
// the longest; after Close it closes v at once. Errors of those closes are dropped (a [Call]
// never fails to close).
func (p *CallPool[K, V]) Put(key K, v V) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		v.Close()
		return
	}
	p.idle = append(p.idle, pooled[K, V]{key, v})
	var evicted []pooled[K, V]
	if p.Limit > 0 && len(p.idle) > p.Limit {
		n := len(p.idle) - p.Limit
		evicted = slices.Clone(p.idle[:n])
		p.idle = slices.Delete(p.idle, 0, n)
	}
	p.mu.Unlock()
	for _, e := range evicted {
		e.v.Close()
	}
}

// Idle reports how many idle calls the pool keeps for each key, for tests and diagnostics: a
// run that prepared calls for shapes it should not have shows here.
func (p *CallPool[K, V]) Idle() map[K]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[K]int{}
	for _, e := range p.idle {
		out[e.key]++
	}
	return out
}

// Close closes every idle call and returns their errors joined. Calls that are out stay
// usable by their holders and are closed when they are Put; the session they belong to must
// stay open until then. Close is safe to call more than once.
func (p *CallPool[K, V]) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	var errs []error
	for _, e := range idle {
		errs = append(errs, e.v.Close())
	}
	return errors.Join(errs...)
}

// Key is a text that tells shapes apart, for keying a [CallPool] by them: every name with its
// dimensions, in name order.
func (s Shapes) Key() string {
	names := make([]string, 0, len(s))
	for name := range s {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		b.WriteString(name)
		for _, d := range s[name] {
			b.WriteByte(',')
			b.WriteString(strconv.FormatInt(d, 10))
		}
		b.WriteByte(';')
	}
	return b.String()
}
