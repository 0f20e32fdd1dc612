package models_test

import (
	"context"
	"testing"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/onnxgraph"
)

// typedModel declares float16 and int32 inputs and outputs and a float32 scalar input:
// y16 = x16 * 2 + s (float16), n32 = k32 + 1 (int32), y32 = float(k32) * s.
func typedModel(t *testing.T) []byte {
	t.Helper()
	g := onnxgraph.New("typed", 17)
	b := onnxgraph.Sym("batch")
	x := g.Input("x16", onnxgraph.Float16, b, onnxgraph.Fixed(3))
	k := g.Input("k32", onnxgraph.Int32, b)
	s := g.Input("s", onnxgraph.Float32)
	cast := func(v string, to onnxgraph.ElemType) string {
		return g.Op("Cast", []string{v}, onnxgraph.AttrInt("to", int64(to)))
	}
	g.Node("Add", []string{g.Op("Mul", []string{x, cast(g.Scalar(2), onnxgraph.Float16)}), cast(s, onnxgraph.Float16)}, []string{"y16"})
	g.Node("Add", []string{k, cast(g.Int64s(1), onnxgraph.Int32)}, []string{"n32"})
	g.Node("Mul", []string{cast(k, onnxgraph.Float32), s}, []string{"y32"})
	g.Output("y16", onnxgraph.Float16, b, onnxgraph.Fixed(3))
	g.Output("n32", onnxgraph.Int32, b)
	g.Output("y32", onnxgraph.Float32, b)
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCallConvertsDeclaredTypes(t *testing.T) {
	modeltest.Runtime(t)
	s, err := models.OpenBytes("typed", typedModel(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if in, _ := s.Input("x16"); in.Type != models.Float16 {
		t.Fatalf("x16 declared as %v", in)
	}
	c, err := s.NewCall(models.Shapes{"x16": {2, 3}, "k32": {2}, "s": {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	x, _ := c.Float32("x16")
	k, _ := c.Int64("k32")
	sc, _ := c.Float32("s")
	if _, err := c.Int64("x16"); err == nil {
		t.Error("asking for a float input as integers should fail")
	}
	for run, scale := range []float32{0.5, 3} { // the scalar changes between runs
		copy(x, []float32{1, -2, 0.25, 1000, 0, 65504 / 4})
		copy(k, []int64{7, -3})
		sc[0] = scale
		if err := c.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		y, shape, err := c.Output("y16")
		if err != nil {
			t.Fatal(err)
		}
		want := []float32{2 + scale, -4 + scale, 0.5 + scale, 2000 + scale, scale, 65504/2 + scale}
		for i := range want {
			// float16 has 11 significant bits: compare at its resolution.
			if abs32(y[i]-want[i]) > abs32(want[i])/1024+1e-3 {
				t.Errorf("run %d: y16[%d] = %g, want %g", run, i, y[i], want[i])
			}
		}
		if len(shape) != 2 || shape[0] != 2 || shape[1] != 3 {
			t.Errorf("y16 shape %v", shape)
		}
		n, _, err := c.OutputInt64("n32")
		if err != nil || n[0] != 8 || n[1] != -2 {
			t.Errorf("run %d: n32 = %v, %v", run, n, err)
		}
		y32, _, _ := c.Output("y32")
		if y32[0] != 7*scale || y32[1] != -3*scale {
			t.Errorf("run %d: y32 = %v", run, y32)
		}
	}
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

// TestCloseWaitsForACancellationInFlight cancels a Call's context and closes the Call at once,
// many times: the cancellation hook terminates the run options in another goroutine, and Close
// must not free them under it (that crashed a batch stopping early, rarely: the loop and the
// race detector make the window likely to be hit if it exists).
func TestCloseWaitsForACancellationInFlight(t *testing.T) {
	modeltest.Runtime(t)
	s, err := models.OpenBytes("typed", typedModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	shapes := models.Shapes{"x16": {1, 3}, "k32": {1}, "s": {}}
	for range 300 {
		c, err := s.NewCall(shapes)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := c.Run(ctx); err != nil {
			t.Fatal(err)
		}
		go cancel()
		c.Close()
		cancel()
	}
	// A Call that outlives one context runs unterminated under the next.
	c, err := s.NewCall(shapes)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := c.Run(context.Background()); err != nil {
		t.Fatalf("a run under a fresh context after the last one was cancelled: %v", err)
	}
}
