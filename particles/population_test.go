package particles_test

import (
	"slices"
	"testing"

	"github.com/fksteer/fksteer/particles"
)

// filled returns a population with G=2, K=4, Dim=3, a float32 field "a" (width 2) and a float64
// field "b" (width 3), every value encoding its row and position so copies can be traced.
func filled(t *testing.T) (*particles.Population, []float32, []float64) {
	t.Helper()
	p, err := particles.New(2, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	a := p.AddFloat32("a", 2)
	b := p.AddFloat64("b", 3)
	for r := range p.Rows() {
		for i := range 3 {
			p.X[r*3+i] = float32(100*r + i)
			b[r*3+i] = float64(1000*r + i)
		}
		for i := range 2 {
			a[r*2+i] = float32(-100*r - i)
		}
		p.LogW[r] = float64(r) + 0.5
	}
	return p, a, b
}

type snapshot struct {
	x, a []float32
	b, w []float64
}

func snap(p *particles.Population) snapshot {
	return snapshot{slices.Clone(p.X), slices.Clone(p.Float32("a")), slices.Clone(p.Float64("b")), slices.Clone(p.LogW)}
}

func (s snapshot) equal(o snapshot) bool {
	return slices.Equal(s.x, o.x) && slices.Equal(s.a, o.a) && slices.Equal(s.b, o.b) && slices.Equal(s.w, o.w)
}

func TestNewPopulation(t *testing.T) {
	for _, sz := range [][3]int{{0, 4, 3}, {2, 0, 3}, {2, 4, 0}, {-1, 1, 1}} {
		if _, err := particles.New(sz[0], sz[1], sz[2]); err == nil {
			t.Errorf("New(%v): no error", sz)
		}
	}
	p, err := particles.New(3, 5, 7)
	if err != nil {
		t.Fatal(err)
	}
	if p.Groups() != 3 || p.K() != 5 || p.Dim() != 7 || p.Rows() != 15 || len(p.X) != 105 || len(p.LogW) != 15 {
		t.Errorf("sizes: G=%d K=%d Dim=%d Rows=%d len(X)=%d len(LogW)=%d", p.Groups(), p.K(), p.Dim(), p.Rows(), len(p.X), len(p.LogW))
	}
	if p.DistinctRoots(2) != 5 {
		t.Errorf("DistinctRoots before any resampling = %d, want K = 5", p.DistinctRoots(2))
	}
	if f := p.AddFloat64("f", 2); len(f) != 30 || p.Float64("f") == nil || p.Float32("f") != nil || p.Float64("g") != nil {
		t.Error("AddFloat64/Float64/Float32 lookup mismatch")
	}
	for _, bad := range []func(){
		func() { p.AddFloat32("f", 1) }, // same name, other type
		func() { p.AddFloat64("", 1) },
		func() { p.AddFloat64("h", 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("bad field registration did not panic")
				}
			}()
			bad()
		}()
	}
}

func TestPopulationResampleCopiesEveryField(t *testing.T) {
	p, _, _ := filled(t)
	before := snap(p)
	// Slot 3 is a parent (of 0 and 1) and a child (of 1); slot 0 is a parent (of 2) and a child.
	parents := []int{3, 3, 0, 1}
	if err := p.Resample(4, 1, parents); err != nil {
		t.Fatal(err)
	}
	after := snap(p)
	const k = 4
	for r := range 8 {
		src := r // group 0 untouched
		if r >= k {
			src = k + parents[r-k]
		}
		if !slices.Equal(after.x[r*3:r*3+3], before.x[src*3:src*3+3]) ||
			!slices.Equal(after.a[r*2:r*2+2], before.a[src*2:src*2+2]) ||
			!slices.Equal(after.b[r*3:r*3+3], before.b[src*3:src*3+3]) {
			t.Errorf("row %d: got x=%v a=%v b=%v, want a copy of row %d", r, after.x[r*3:r*3+3], after.a[r*2:r*2+2], after.b[r*3:r*3+3], src)
		}
		wantW := before.w[r]
		if r >= k {
			wantW = 0
		}
		if after.w[r] != wantW {
			t.Errorf("LogW[%d] = %v, want %v", r, after.w[r], wantW)
		}
	}
	if p.NumEvents() != 1 {
		t.Fatalf("NumEvents = %d, want 1", p.NumEvents())
	}
	if e := p.Event(0); e.Step != 4 || e.Group != 1 || !slices.Equal(e.Parents, parents) {
		t.Errorf("Event(0) = %+v, want step 4, group 1, parents %v", e, parents)
	}
	// The event must not alias the caller's slice.
	parents[0] = 0
	if p.Event(0).Parents[0] != 3 {
		t.Error("Event parents alias the caller's slice")
	}
}

func TestPopulationResampleErrorsLeaveItUnchanged(t *testing.T) {
	p, _, _ := filled(t)
	if err := p.Resample(5, 0, []int{0, 0, 1, 1}); err != nil {
		t.Fatal(err)
	}
	for i := range p.LogW {
		p.LogW[i] = float64(i)
	}
	before := snap(p)
	for _, tc := range []struct {
		name        string
		step, group int
		parents     []int
	}{
		{"group too big", 6, 2, []int{0, 1, 2, 3}},
		{"negative group", 6, -1, []int{0, 1, 2, 3}},
		{"short parents", 6, 0, []int{0, 1, 2}},
		{"parent out of range", 6, 0, []int{0, 1, 2, 4}},
		{"negative parent", 6, 0, []int{0, -1, 2, 3}},
		{"same step again", 5, 0, []int{0, 1, 2, 3}},
		{"earlier step", 4, 0, []int{0, 1, 2, 3}},
		{"negative step", -1, 1, []int{0, 1, 2, 3}},
	} {
		if err := p.Resample(tc.step, tc.group, tc.parents); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
		if !snap(p).equal(before) || p.NumEvents() != 1 {
			t.Errorf("%s: population changed on error", tc.name)
		}
	}
	// Another group may use any step; the same group a later one.
	if err := p.Resample(5, 1, []int{0, 1, 2, 3}); err != nil {
		t.Error(err)
	}
	if err := p.Resample(6, 0, []int{0, 1, 2, 3}); err != nil {
		t.Error(err)
	}
}

// TestGenealogy runs a crafted sequence of events on two interleaved groups of K=4 and checks
// DistinctRoots, Roots and Lineage against hand-traced answers.
func TestGenealogy(t *testing.T) {
	p, err := particles.New(2, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	for r := range p.Rows() {
		p.X[r] = float32(r)
	}
	resample := func(step, g int, parents ...int) {
		t.Helper()
		if err := p.Resample(step, g, parents); err != nil {
			t.Fatal(err)
		}
	}
	resample(2, 0, 0, 0, 1, 1) // group 0 roots: 0 0 1 1
	resample(2, 1, 3, 2, 1, 0) // group 1 reversed: all four roots survive
	if got := p.DistinctRoots(0); got != 2 {
		t.Errorf("after step 2: DistinctRoots(0) = %d, want 2", got)
	}
	resample(3, 1, 1, 1, 1, 1) // group 1: everyone from slot 1, whose root is slot 2
	resample(5, 0, 2, 3, 3, 3) // group 0: slots 2 and 3 both have root 1
	if got := p.DistinctRoots(0); got != 1 {
		t.Errorf("after step 5: DistinctRoots(0) = %d, want 1", got)
	}
	if got := p.DistinctRoots(1); got != 1 {
		t.Errorf("after step 3: DistinctRoots(1) = %d, want 1", got)
	}
	roots := make([]int, 4)
	p.Roots(0, roots)
	if !slices.Equal(roots, []int{1, 1, 1, 1}) {
		t.Errorf("Roots(0) = %v, want [1 1 1 1]", roots)
	}
	p.Roots(1, roots)
	if !slices.Equal(roots, []int{6, 6, 6, 6}) {
		t.Errorf("Roots(1) = %v, want [6 6 6 6] (rows)", roots)
	}
	// X follows the roots: every particle is a copy of its root's initial state.
	for r := range p.Rows() {
		want := float32(1)
		if r >= 4 {
			want = 6
		}
		if p.X[r] != want {
			t.Errorf("X[%d] = %v, want %v (its root's state)", r, p.X[r], want)
		}
	}

	for _, tc := range []struct {
		row   int
		steps int
		want  []int
	}{
		// Row 0: slot 0 <- slot 2 at step 5 <- slot 1 at step 2.
		{0, 7, []int{1, 1, 1, 2, 2, 2, 0}},
		// Resamplings past len(dst) are still traced.
		{0, 4, []int{1, 1, 1, 2}},
		{0, 5, []int{1, 1, 1, 2, 2}},
		{0, 6, []int{1, 1, 1, 2, 2, 2}},
		// Row 3: slot 3 <- 3 at step 5 <- 1 at step 2.
		{3, 7, []int{1, 1, 1, 3, 3, 3, 3}},
		// Row 5 (group 1 slot 1): <- slot 1 at step 3 <- slot 2 at step 2.
		{5, 5, []int{6, 6, 6, 5, 5}},
		{7, 5, []int{6, 6, 6, 5, 7}},
		{7, 0, []int{}},
	} {
		got := make([]int, tc.steps)
		p.Lineage(tc.row, got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Lineage(%d) over %d steps = %v, want %v", tc.row, tc.steps, got, tc.want)
		}
	}

	if p.NumEvents() != 4 {
		t.Fatalf("NumEvents = %d, want 4", p.NumEvents())
	}
	want := []particles.Event{
		{Step: 2, Group: 0, Parents: []int{0, 0, 1, 1}},
		{Step: 2, Group: 1, Parents: []int{3, 2, 1, 0}},
		{Step: 3, Group: 1, Parents: []int{1, 1, 1, 1}},
		{Step: 5, Group: 0, Parents: []int{2, 3, 3, 3}},
	}
	for i, w := range want {
		e := p.Event(i)
		if e.Step != w.Step || e.Group != w.Group || !slices.Equal(e.Parents, w.Parents) {
			t.Errorf("Event(%d) = %+v, want %+v", i, e, w)
		}
	}
}

func TestPopulationResampleNoAllocs(t *testing.T) {
	p, err := particles.New(2, 16, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p.AddFloat64("reward", 4)
	p.AddFloat32("memory", 2048) // wider than X: scratch must grow
	parents := make([]int, 16)
	for k := range parents {
		parents[k] = k / 2
	}
	const runs = 100
	p.ReserveEvents(runs + 1) // AllocsPerRun calls once more to warm up
	step := 0
	if a := testing.AllocsPerRun(runs, func() {
		if err := p.Resample(step, 1, parents); err != nil {
			t.Fatal(err)
		}
		step++
	}); a != 0 {
		t.Errorf("%v allocations per Population.Resample, want 0", a)
	}
	dst := make([]int, 10)
	if a := testing.AllocsPerRun(10, func() {
		p.DistinctRoots(1)
		p.Lineage(20, dst)
	}); a != 0 {
		t.Errorf("%v allocations per DistinctRoots+Lineage, want 0", a)
	}
}

func BenchmarkPopulationResample(b *testing.B) {
	const g, k, dim = 4, 16, 1024
	p, err := particles.New(g, k, dim)
	if err != nil {
		b.Fatal(err)
	}
	p.AddFloat64("potentials", 5)
	parents := make([]int, k)
	for i := range parents {
		parents[i] = (i * 7) % k
	}
	// The genealogy grows by one event per call; reserve it so the loop measures the copy only.
	p.ReserveEvents(b.N)
	b.SetBytes(int64(k * dim * 4))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := p.Resample(i, i%g, parents); err != nil {
			b.Fatal(err)
		}
	}
}
