package pipelines

import "testing"

func TestPool(t *testing.T) {
	built, released := 0, 0
	var p Pool[*int]
	p.Release = func(*int) { released++ }
	build := func() (*int, error) { built++; v := built; return &v, nil }
	a, _ := p.Get(4, build)
	b, _ := p.Get(4, build)
	p.Put(4, a)
	if c, _ := p.Get(8, build); *c != 3 {
		t.Errorf("a call for 8 rows reused one for 4")
	}
	if c, _ := p.Get(4, build); c != a {
		t.Errorf("Get did not reuse the kept call")
	}
	p.Put(4, a)
	p.Put(4, b)
	if k := p.Kept(); k[4] != 2 || len(k) != 1 {
		t.Errorf("kept %v, want 2 of 4 rows", k)
	}
	p.Close()
	p.Put(8, new(int)) // returned after Close: released at once
	if built != 3 || released != 3 {
		t.Errorf("built %d, released %d; want 3 and 3", built, released)
	}
}
