package onnxgraph_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/onnxgraph"
	"github.com/fksteer/fksteer/models/onnxpb"
)

// affine builds Y = X W + b for X [batch, 2], W [2, 3], b [3].
func affine(t testing.TB) []byte {
	t.Helper()
	g := onnxgraph.New("affine", 17)
	x := g.Input("x", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(2))
	w := g.Initializer("w", []int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	b := g.Initializer("b", []int64{3}, []float32{0.5, 0, -0.5})
	g.Node("Add", []string{g.Op("MatMul", []string{x, w}), b}, []string{"y"})
	g.Output("y", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(3))
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// run1 runs a one-input one-output float32 model.
func run1(t *testing.T, model []byte, in, out string, shape ort.Shape, x []float32) []float32 {
	t.Helper()
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{in}, []string{out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	xt, err := ort.NewTensor(shape, x)
	if err != nil {
		t.Fatal(err)
	}
	defer xt.Destroy()
	outs := []ort.Value{nil}
	if err := s.Run([]ort.Value{xt}, outs); err != nil {
		t.Fatal(err)
	}
	defer outs[0].Destroy()
	return append([]float32(nil), outs[0].(*ort.Tensor[float32]).GetData()...)
}

func TestAffineRunsInORT(t *testing.T) {
	modeltest.Runtime(t)
	model := affine(t)
	w := [2][3]float32{{1, 2, 3}, {4, 5, 6}}
	b := [3]float32{0.5, 0, -0.5}
	for _, batch := range []int{1, 3} { // the symbolic batch binds to any size
		x := make([]float32, batch*2)
		for i := range x {
			x[i] = float32(i) - 1.5
		}
		y := run1(t, model, "x", "y", ort.NewShape(int64(batch), 2), x)
		if len(y) != batch*3 {
			t.Fatalf("batch %d: got %d outputs, want %d", batch, len(y), batch*3)
		}
		for r := range batch {
			for c := range 3 {
				want := x[2*r]*w[0][c] + x[2*r+1]*w[1][c] + b[c]
				if got := y[3*r+c]; got != want {
					t.Errorf("batch %d: y[%d][%d] = %v, want %v", batch, r, c, got, want)
				}
			}
		}
	}
}

func TestElemTypesAndSymbolicDims(t *testing.T) {
	modeltest.Runtime(t)
	g := onnxgraph.New("types", 17)
	h := g.Input("h", onnxgraph.Float16, onnxgraph.Sym("n"))
	i := g.Input("i", onnxgraph.Int32, onnxgraph.Sym("n"))
	l := g.Input("l", onnxgraph.Int64, onnxgraph.Sym("n"))
	sum := g.Op("Add", []string{
		g.Op("Cast", []string{h}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32))),
		g.Op("Cast", []string{i}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32))),
	})
	sum = g.Op("Add", []string{sum, g.Op("Cast", []string{l}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))})
	g.Node("Cast", []string{sum}, []string{"out"}, onnxgraph.AttrInt("to", int64(onnxgraph.Float16)))
	g.Output("out", onnxgraph.Float16, onnxgraph.Sym("n"))
	model, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		t.Fatal(err)
	}
	wantIn := []ort.TensorElementDataType{ort.TensorElementDataTypeFloat16, ort.TensorElementDataTypeInt32, ort.TensorElementDataTypeInt64}
	for k, info := range ins {
		if info.DataType != wantIn[k] || len(info.Dimensions) != 1 || info.Dimensions[0] != -1 {
			t.Errorf("input %s: %v %v, want %v [-1]", info.Name, info.DataType, info.Dimensions, wantIn[k])
		}
	}
	if outs[0].DataType != ort.TensorElementDataTypeFloat16 {
		t.Errorf("output type %v, want float16", outs[0].DataType)
	}

	// float16 bit patterns: 1.0, -2.0, 0.5.
	half := []uint16{0x3C00, 0xC000, 0x3800}
	hb := make([]byte, 2*len(half))
	for k, v := range half {
		binary.LittleEndian.PutUint16(hb[2*k:], v)
	}
	ht, err := ort.NewCustomDataTensor(ort.NewShape(3), hb, ort.TensorElementDataTypeFloat16)
	if err != nil {
		t.Fatal(err)
	}
	defer ht.Destroy()
	it, err := ort.NewTensor(ort.NewShape(3), []int32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Destroy()
	lt, err := ort.NewTensor(ort.NewShape(3), []int64{10, 20, 30})
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Destroy()
	ot, err := ort.NewCustomDataTensor(ort.NewShape(3), make([]byte, 6), ort.TensorElementDataTypeFloat16)
	if err != nil {
		t.Fatal(err)
	}
	defer ot.Destroy()
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{"h", "i", "l"}, []string{"out"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if err := s.Run([]ort.Value{ht, it, lt}, []ort.Value{ot}); err != nil {
		t.Fatal(err)
	}
	// 1+1+10 = 12, -2+2+20 = 20, 0.5+3+30 = 33.5, all exact in float16.
	want := []uint16{0x4A00, 0x4D00, 0x5030}
	for k, w := range want {
		if got := binary.LittleEndian.Uint16(ot.GetData()[2*k:]); got != w {
			t.Errorf("out[%d] = %#04x, want %#04x", k, got, w)
		}
	}
}

func TestModelHeader(t *testing.T) {
	data := affine(t)
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.IrVersion != 8 || m.ProducerName != "fksteer" {
		t.Errorf("ir_version %d producer %q, want 8 fksteer", m.IrVersion, m.ProducerName)
	}
	if len(m.OpsetImport) != 1 || m.OpsetImport[0].Domain != "" || m.OpsetImport[0].Version != 17 {
		t.Errorf("opset_import %v, want default domain 17", m.OpsetImport)
	}
	w := m.Graph.Initializer[0]
	if w.Name != "w" || w.DataType != int32(onnxgraph.Float32) || len(w.RawData) != 24 ||
		math.Float32frombits(binary.LittleEndian.Uint32(w.RawData[20:])) != 6 {
		t.Errorf("initializer w = %v", w)
	}
	if !bytes.Equal(data, affine(t)) {
		t.Error("two builds of the same graph differ")
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func(g *onnxgraph.Graph)
		want  string
	}{
		{"duplicate", func(g *onnxgraph.Graph) {
			g.Input("x", onnxgraph.Float32)
			g.Initializer("x", nil, []float32{1})
		}, `initializer "x": value already defined`},
		{"undefined input", func(g *onnxgraph.Graph) {
			g.Node("Relu", []string{"nope"}, []string{"y"})
		}, `reads "nope", which is not defined yet`},
		{"data length", func(g *onnxgraph.Graph) {
			g.Initializer("w", []int64{2, 2}, []float32{1, 2, 3})
		}, "need 4 elements, got 3"},
		{"output never defined", func(g *onnxgraph.Graph) {
			g.Input("x", onnxgraph.Float32)
			g.Output("z", onnxgraph.Float32)
		}, `output "z" is never defined`},
		{"no outputs", func(g *onnxgraph.Graph) {
			g.Input("x", onnxgraph.Float32)
		}, "has no outputs"},
		{"first error wins", func(g *onnxgraph.Graph) {
			g.Node("Relu", []string{"a"}, []string{"y"})
			g.Node("Relu", []string{"b"}, []string{"y"})
		}, `reads "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := onnxgraph.New("bad", 17)
			tt.build(g)
			_, err := g.Marshal()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Marshal error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestFreshAvoidsUsedNames(t *testing.T) {
	g := onnxgraph.New("fresh", 17)
	g.Input("t_0", onnxgraph.Float32)
	if got := g.Fresh("t"); got != "t_1" {
		t.Errorf("Fresh = %q, want t_1 (t_0 is taken)", got)
	}
	if a, b := g.Fresh("t"), g.Fresh("t"); a == b {
		t.Errorf("Fresh returned %q twice", a)
	}
}

func ExampleGraph() {
	g := onnxgraph.New("scale", 17)
	x := g.Input("x", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(4))
	g.Node("Mul", []string{x, g.Scalar(2)}, []string{"y"})
	g.Output("y", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(4))
	m, err := g.Model()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, n := range m.Graph.Node {
		fmt.Println(n.OpType, n.Input, "->", n.Output)
	}
	// Output:
	// Mul [x const_0] -> [y]
}
