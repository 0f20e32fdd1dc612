package models_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fksteer/fksteer/models"
)

// fakeCall stands for a prepared call: it counts its users and its closes.
type fakeCall struct {
	id     int
	users  atomic.Int32
	closed atomic.Int32
}

func (f *fakeCall) Close() error { f.closed.Add(1); return nil }

func TestCallPoolReusesByKey(t *testing.T) {
	var made []*fakeCall
	prepare := func() (*fakeCall, error) {
		f := &fakeCall{id: len(made)}
		made = append(made, f)
		return f, nil
	}
	var p models.CallPool[int, *fakeCall]
	a, _ := p.Get(4, prepare)
	b, _ := p.Get(4, prepare)
	p.Put(4, a)
	if c, _ := p.Get(8, prepare); c.id != 2 {
		t.Errorf("a call for 8 rows reused one for 4")
	}
	if c, _ := p.Get(4, prepare); c != a {
		t.Errorf("Get did not reuse the idle call")
	}
	p.Put(4, a)
	p.Put(4, b)
	if c, _ := p.Get(4, prepare); c != b {
		t.Errorf("Get handed out %d, want the call Put last (%d)", c.id, b.id)
	}
	p.Put(4, b)
	if idle := p.Idle(); idle[4] != 2 || len(idle) != 1 {
		t.Errorf("idle %v, want 2 calls for 4 rows", idle)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if a.closed.Load() != 1 || b.closed.Load() != 1 || made[2].closed.Load() != 0 {
		t.Errorf("Close closed %d, %d and %d times; want the idle ones once, the one out not yet", a.closed.Load(), b.closed.Load(), made[2].closed.Load())
	}
	p.Put(8, made[2]) // back after Close: closed at once
	if made[2].closed.Load() != 1 {
		t.Errorf("a call Put after Close was not closed")
	}
	if _, err := p.Get(4, prepare); !errors.Is(err, models.ErrPoolClosed) || len(made) != 3 {
		t.Errorf("Get after Close: %v, %d prepared; want ErrPoolClosed and nothing prepared", err, len(made))
	}
	if err := p.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

func TestCallPoolLimitClosesTheOldest(t *testing.T) {
	p := models.CallPool[string, *fakeCall]{Limit: 2}
	calls := make([]*fakeCall, 3)
	for i := range calls {
		calls[i], _ = p.Get(string(rune('a'+i)), func() (*fakeCall, error) { return &fakeCall{id: i}, nil })
	}
	for i, c := range calls {
		p.Put(string(rune('a'+i)), c)
	}
	if calls[0].closed.Load() != 1 || calls[1].closed.Load() != 0 || calls[2].closed.Load() != 0 {
		t.Errorf("past the limit of 2 the pool closed %d, %d, %d times; want only the oldest", calls[0].closed.Load(), calls[1].closed.Load(), calls[2].closed.Load())
	}
	prepared := false
	if _, err := p.Get("a", func() (*fakeCall, error) { prepared = true; return &fakeCall{}, nil }); err != nil || !prepared {
		t.Errorf("the evicted key was handed out again")
	}
}

func TestCallPoolPrepareErrorLeavesItUnchanged(t *testing.T) {
	var p models.CallPool[int, *fakeCall]
	boom := errors.New("boom")
	if _, err := p.Get(1, func() (*fakeCall, error) { return nil, boom }); err != boom {
		t.Fatalf("Get returned %v, want prepare's error", err)
	}
	f := &fakeCall{}
	p.Put(1, f)
	if g, _ := p.Get(1, func() (*fakeCall, error) { return nil, boom }); g != f {
		t.Errorf("the pool lost its idle call after a failed prepare")
	}
}

// TestCallPoolNeverSharesACall runs many goroutines through one pool (with -race, the race
// detector checks the pool's own bookkeeping): no call is ever out with two users, and every
// call made is closed exactly once in the end.
func TestCallPoolNeverSharesACall(t *testing.T) {
	p := models.CallPool[int, *fakeCall]{Limit: 3}
	var mu sync.Mutex
	var made []*fakeCall
	prepare := func() (*fakeCall, error) {
		f := &fakeCall{}
		mu.Lock()
		made = append(made, f)
		mu.Unlock()
		return f, nil
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := (g + i) % 3
				c, err := p.Get(key, prepare)
				if err != nil {
					t.Error(err)
					return
				}
				if n := c.users.Add(1); n != 1 {
					t.Errorf("a call is out with %d users", n)
				}
				if c.closed.Load() != 0 {
					t.Errorf("Get handed out a closed call")
				}
				c.users.Add(-1)
				p.Put(key, c)
			}
		})
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i, f := range made {
		if n := f.closed.Load(); n != 1 {
			t.Errorf("call %d of %d closed %d times, want once", i, len(made), n)
		}
	}
}

func TestShapesKey(t *testing.T) {
	a := models.Shapes{"x": {2, 3}, "ids": {2, 77}}
	b := models.Shapes{"ids": {2, 77}, "x": {2, 3}}
	if a.Key() != b.Key() {
		t.Errorf("the key depends on map order: %q, %q", a.Key(), b.Key())
	}
	if c := (models.Shapes{"x": {2, 3}, "ids": {2, 78}}); c.Key() == a.Key() {
		t.Errorf("different shapes share the key %q", a.Key())
	}
}
