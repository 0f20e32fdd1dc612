package pipelines

import "sync"

// Pool keeps prepared model calls (or anything built for a fixed batch size) by row count, so
// that the steps of a run, and runs on several goroutines, reuse them instead of preparing new
// ones. It is safe for concurrent use; the zero value is ready.
type Pool[T any] struct {
	mu     sync.Mutex
	free   map[int][]T
	closed bool
	// Release frees a value the pool no longer keeps (after Close); may be nil.
	Release func(T)
}

// Get returns a kept value for rows, or a new one from build.
func (p *Pool[T]) Get(rows int, build func() (T, error)) (T, error) {
	p.mu.Lock()
	if l := p.free[rows]; len(l) > 0 {
		v := l[len(l)-1]
		p.free[rows] = l[:len(l)-1]
		p.mu.Unlock()
		return v, nil
	}
	p.mu.Unlock()
	return build()
}

// Put keeps v for later Gets of rows; after Close it releases v instead.
func (p *Pool[T]) Put(rows int, v T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		if p.Release != nil {
			p.Release(v)
		}
		return
	}
	if p.free == nil {
		p.free = map[int][]T{}
	}
	p.free[rows] = append(p.free[rows], v)
}

// Kept reports how many values the pool holds for each row count.
func (p *Pool[T]) Kept() map[int]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]int, len(p.free))
	for rows, l := range p.free {
		if len(l) > 0 {
			out[rows] = len(l)
		}
	}
	return out
}

// Close releases every kept value; values Put later are released at once.
func (p *Pool[T]) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.free {
		for _, v := range l {
			if p.Release != nil {
				p.Release(v)
			}
		}
	}
	p.free, p.closed = nil, true
}
