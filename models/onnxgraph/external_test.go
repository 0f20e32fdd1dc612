package onnxgraph_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/onnxgraph"
	"github.com/fksteer/fksteer/models/onnxpb"
)

// mlp builds y = tanh(x W1 + b1) W2 for x [batch, 8]: W1 [8, 16] and W2 [16, 4] are large
// enough to go external, b1 [16] (64 bytes) is not at a 128-byte threshold.
func mlp() *onnxgraph.Graph {
	g := onnxgraph.New("mlp", 17)
	x := g.Input("x", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(8))
	fill := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * float32((i*37)%23-11)
		}
		return v
	}
	w1 := g.Initializer("w1", []int64{8, 16}, fill(128, 0.05))
	b1 := g.Initializer("b1", []int64{16}, fill(16, 0.01))
	w2 := g.Initializer("w2", []int64{16, 4}, fill(64, 0.03))
	h := g.Op("Tanh", []string{g.Op("Add", []string{g.Op("MatMul", []string{x, w1}), b1})})
	g.Node("MatMul", []string{h, w2}, []string{"y"})
	g.Output("y", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(4))
	return g
}

func TestMarshalExternalLayout(t *testing.T) {
	g := mlp()
	inline, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	model, data, err := g.MarshalExternal("model.onnx_data", 128)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 4*(128+64) {
		t.Errorf("external data holds %d bytes, want %d (w1 and w2)", len(data), 4*(128+64))
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(model, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string][3]string{ // location, offset, length
		"w1": {"model.onnx_data", "0", "512"},
		"w2": {"model.onnx_data", "512", "256"},
	}
	for _, init := range m.Graph.Initializer {
		w, external := want[init.Name]
		if !external {
			if init.DataLocation != onnxpb.TensorProto_DEFAULT || len(init.RawData) != 64 {
				t.Errorf("%s: location %v with %d inline bytes, want inline 64", init.Name, init.DataLocation, len(init.RawData))
			}
			continue
		}
		got := map[string]string{}
		for _, e := range init.ExternalData {
			got[e.Key] = e.Value
		}
		if init.DataLocation != onnxpb.TensorProto_EXTERNAL || len(init.RawData) != 0 ||
			got["location"] != w[0] || got["offset"] != w[1] || got["length"] != w[2] {
			t.Errorf("%s: location %v, %d inline bytes, external_data %v; want EXTERNAL %v", init.Name, init.DataLocation, len(init.RawData), got, w)
		}
	}
	// The graph is untouched and the bytes deterministic.
	if again, err := g.Marshal(); err != nil || !bytes.Equal(again, inline) {
		t.Error("MarshalExternal changed the graph's inline serialisation")
	}
	if m2, d2, err := g.MarshalExternal("model.onnx_data", 128); err != nil || !bytes.Equal(m2, model) || !bytes.Equal(d2, data) {
		t.Error("two MarshalExternal calls differ")
	}
	// Nothing large enough: no data, and the inline model.
	if m3, d3, err := g.MarshalExternal("w.bin", 1<<20); err != nil || len(d3) != 0 || !bytes.Equal(m3, inline) {
		t.Errorf("threshold above every tensor: %d data bytes, model equal to inline: %v", len(d3), bytes.Equal(m3, inline))
	}
}

func TestMarshalExternalRejectsBadLocations(t *testing.T) {
	for _, loc := range []string{"", "/tmp/w.bin", "../w.bin"} {
		if _, _, err := mlp().MarshalExternal(loc, 0); err == nil || !strings.Contains(err.Error(), "local relative path") {
			t.Errorf("location %q: error %v", loc, err)
		}
	}
}

func TestExternalModelRunsLikeInline(t *testing.T) {
	modeltest.Runtime(t)
	g := mlp()
	inline, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model, data, err := g.MarshalExternal("weights.pb", 128)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "weights.pb"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 3*8)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	want := run1(t, inline, "x", "y", ort.NewShape(3, 8), x)

	s, err := ort.NewDynamicAdvancedSession(path, []string{"x"}, []string{"y"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	xt, err := ort.NewTensor(ort.NewShape(3, 8), x)
	if err != nil {
		t.Fatal(err)
	}
	defer xt.Destroy()
	outs := []ort.Value{nil}
	if err := s.Run([]ort.Value{xt}, outs); err != nil {
		t.Fatal(err)
	}
	defer outs[0].Destroy()
	got := outs[0].(*ort.Tensor[float32]).GetData()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("y[%d] = %v from the external model, %v inline", i, got[i], want[i])
		}
	}
}
