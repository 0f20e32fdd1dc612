package rewards_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// stub is a reward with scripted scores: image i gets scores[i % len(scores)]. Score calls hook
// first, if set, and fails with hook's error.
type stub struct {
	name   string
	scores []float64
	hook   func(ctx context.Context) error
	closed bool
}

func (s *stub) Name() string { return s.name }
func (s *stub) Close() error { s.closed = true; return nil }
func (s *stub) Score(ctx context.Context, imgs pixels.Images, _ string, dst []float64) error {
	if s.hook != nil {
		if err := s.hook(ctx); err != nil {
			return err
		}
	}
	for i := range dst {
		dst[i] = s.scores[i%len(s.scores)]
	}
	return nil
}

// The spec tests use "teststub:scores=a/b/c".
func init() {
	rewards.Register("teststub", func(o *rewards.Options, _ rewards.Env) (rewards.Reward, error) {
		var scores []float64
		for _, f := range strings.Split(o.String("scores", "0"), "/") {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				return nil, err
			}
			scores = append(scores, v)
		}
		o.String("label", "") // accepted and ignored: a place for values with "+" in them
		return &stub{name: "teststub", scores: scores}, nil
	})
}

func scoreSpec(t *testing.T, spec string, n int) (rewards.Reward, []float64) {
	t.Helper()
	r, err := rewards.Parse(spec, rewards.Env{})
	if err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	t.Cleanup(func() { r.Close() })
	dst := make([]float64, n)
	if err := r.Score(context.Background(), pixels.NewImages(n, 3, 2, 2), "", dst); err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	return r, dst
}

func TestCompositeSpecs(t *testing.T) {
	for _, tc := range []struct {
		spec, name string
		want       []float64
		composite  bool
	}{
		{"teststub:scores=1/2", "teststub", []float64{1, 2}, false},
		{"teststub:scores=1e+2", "teststub", []float64{100, 100}, false},    // "+2" starts no term
		{"teststub:scores=3,label=c++", "teststub", []float64{3, 3}, false}, // nor does a trailing "+"
		{"2*teststub:scores=3", "2*teststub", []float64{6, 6}, true},        // one weighted term
		{"0.7*teststub:scores=1/2+0.3*teststub:scores=10", "0.7*teststub+0.3*teststub", []float64{3.7, 4.4}, true},
		{"teststub:scores=1 + teststub:scores=2/4", "1*teststub+1*teststub", []float64{3, 5}, true},
		{"teststub:scores=1+-0.5*teststub:scores=4", "1*teststub+-0.5*teststub", []float64{-1, -1}, true},
		// A black 2x2 image is at distance 1 from #ff0000: colour score 1 - 1/sqrt(3).
		{"0.5*teststub:scores=2+color:target=#ff0000", "0.5*teststub+1*color", []float64{2 - 1/math.Sqrt(3), 2 - 1/math.Sqrt(3)}, true},
	} {
		r, got := scoreSpec(t, tc.spec, 2)
		if r.Name() != tc.name {
			t.Errorf("%s: name %q, want %q", tc.spec, r.Name(), tc.name)
		}
		if _, ok := r.(*rewards.Composite); ok != tc.composite {
			t.Errorf("%s: composite %v, want %v", tc.spec, ok, tc.composite)
		}
		for i := range tc.want {
			if math.Abs(got[i]-tc.want[i]) > 1e-12 {
				t.Errorf("%s: image %d scores %g, want %g", tc.spec, i, got[i], tc.want[i])
			}
		}
	}
}

func TestCompositeSpecErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"0*teststub:scores=1":                 "non-zero",
		"0.5*teststub+0.5*nosuch":             `unknown reward "nosuch"`,
		"teststub:scores=1,scores=2":          "given 2 times",
		"0.5*teststub+0.5*teststub:scroes=1":  `did you mean "scores"`,
		"0.5*teststub+0.5*classifer:target=1": `did you mean "classifier"`,
	} {
		if _, err := rewards.Parse(spec, rewards.Env{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", spec, err, want)
		}
	}
}

func TestCompositeExplainsParts(t *testing.T) {
	a := &stub{name: "a", scores: []float64{1, 2}}
	b := &stub{name: "a", scores: []float64{10}}
	c, err := rewards.NewComposite([]rewards.Reward{a, b}, []float64{0.5, 2})
	if err != nil {
		t.Fatal(err)
	}
	scores, parts, err := rewards.Explain(context.Background(), c, pixels.NewImages(2, 1, 1, 1), "")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]rewards.PartScore{
		{{Name: "a", Weight: 0.5, Score: 1}, {Name: "a#2", Weight: 2, Score: 10}},
		{{Name: "a", Weight: 0.5, Score: 2}, {Name: "a#2", Weight: 2, Score: 10}},
	}
	for i := range want {
		if scores[i] != 0.5*want[i][0].Score+20 {
			t.Errorf("image %d: total %g", i, scores[i])
		}
		for j := range want[i] {
			if parts[i][j] != want[i][j] {
				t.Errorf("image %d part %d: %+v, want %+v", i, j, parts[i][j], want[i][j])
			}
		}
	}
	if got := c.Parts(); len(got) != 2 || got[1] != (rewards.Part{Name: "a#2", Weight: 2}) {
		t.Errorf("Parts() = %+v", got)
	}
	if err := c.Close(); err != nil || !a.closed || !b.closed {
		t.Errorf("Close: %v, parts closed %v %v", err, a.closed, b.closed)
	}
}

// TestCompositeRunsPartsConcurrently: each part waits until every part has started, which
// only finishes if the parts run at the same time.
func TestCompositeRunsPartsConcurrently(t *testing.T) {
	const parts = 3
	var started sync.WaitGroup
	started.Add(parts)
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	hook := func(ctx context.Context) error {
		started.Done()
		select {
		case <-all:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("the other parts never started: parts run one after another")
		}
	}
	var rs []rewards.Reward
	for range parts {
		rs = append(rs, &stub{name: "s", scores: []float64{1}, hook: hook})
	}
	c, err := rewards.NewComposite(rs, []float64{1, 1, 1})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float64, 4)
	if err := c.Score(context.Background(), pixels.NewImages(4, 1, 1, 1), "", dst); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 3 {
		t.Errorf("total %g, want 3", dst[0])
	}
}

// TestCompositeFirstErrorCancels: a failing part's error is returned, naming the part, and the
// other part sees its context cancelled instead of running on.
func TestCompositeFirstErrorCancels(t *testing.T) {
	boom := errors.New("boom")
	cancelled := make(chan error, 1)
	failing := &stub{name: "failing", scores: []float64{1}, hook: func(context.Context) error { return boom }}
	waiting := &stub{name: "waiting", scores: []float64{1}, hook: func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			cancelled <- ctx.Err()
			return ctx.Err()
		case <-time.After(10 * time.Second):
			cancelled <- nil
			return nil
		}
	}}
	c, err := rewards.NewComposite([]rewards.Reward{waiting, failing}, []float64{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Score(context.Background(), pixels.NewImages(2, 1, 1, 1), "", make([]float64, 2))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "failing") {
		t.Errorf("error %v, want boom naming the part", err)
	}
	if e := <-cancelled; !errors.Is(e, context.Canceled) {
		t.Errorf("the other part saw %v, want context.Canceled", e)
	}
}

// TestCompositeNaNPropagates: a part's NaN or Inf makes the total NaN or Inf for that image
// only, so steering drops just that particle.
func TestCompositeNaNPropagates(t *testing.T) {
	c, err := rewards.NewComposite([]rewards.Reward{
		&stub{name: "a", scores: []float64{1, math.NaN(), 1}},
		&stub{name: "b", scores: []float64{1, 1, math.Inf(-1)}},
	}, []float64{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float64, 3)
	if err := c.Score(context.Background(), pixels.NewImages(3, 1, 1, 1), "", dst); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 2 || !math.IsNaN(dst[1]) || !math.IsInf(dst[2], -1) {
		t.Errorf("scores %v, want [2 NaN -Inf]", dst)
	}
}

func TestCompositeRejectsBadBatches(t *testing.T) {
	c, err := rewards.NewComposite([]rewards.Reward{&stub{name: "a", scores: []float64{1}}}, []float64{1})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Score(context.Background(), pixels.NewImages(3, 1, 1, 1), "", make([]float64, 2)); err == nil {
		t.Error("3 images into 2 slots was accepted")
	}
	bad := pixels.Images{N: 2, C: 1, H: 2, W: 2, Pix: make([]float32, 7)}
	if err := c.Score(context.Background(), bad, "", make([]float64, 2)); err == nil {
		t.Error("a batch with the wrong number of values was accepted")
	}
}
