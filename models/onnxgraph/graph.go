// Package onnxgraph builds small ONNX models from Go: graph inputs and outputs with fixed or
// symbolic dimensions, initializers, nodes with attributes, and a deterministic serialisation to
// a ModelProto (IR version 8). It is the few helpers fksteer needs to write its own models (the
// built-in glyphs denoiser, synthetic Stable-Diffusion-shaped test models), not a framework: it
// does no shape inference and knows no operator beyond its name.
//
// A Graph records the first mistake made while building (a duplicate name, data that does not
// fit its dimensions, a node reading a value that is not defined yet) and Marshal reports it, so
// building code reads as a straight list of statements, in the manner of bufio.Writer:
//
//	g := onnxgraph.New("affine", 17)
//	x := g.Input("x", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(2))
//	w := g.Initializer("w", []int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
//	b := g.Initializer("b", []int64{3}, []float32{0.5, 0, -0.5})
//	g.Node("Add", []string{g.Op("MatMul", []string{x, w}), b}, []string{"y"})
//	g.Output("y", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(3))
//	data, err := g.Marshal()
package onnxgraph

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/fksteer/fksteer/models/onnxpb"
)

// IRVersion is the ONNX IR version of the models this package writes. IR 8 (ONNX 1.10) covers
// opsets up to 18 and is read by every ONNX Runtime release fksteer supports.
const IRVersion = 8

// Producer is the producer_name written into every model.
const Producer = "fksteer"

// ElemType is the element type of a tensor, with the numeric values of onnx.TensorProto.DataType.
type ElemType int32

// The element types fksteer's graphs use. Float64 serves mostly as Cast's target inside graphs
// that need double-precision arithmetic.
const (
	Float32 = ElemType(onnxpb.TensorProto_FLOAT)
	Float16 = ElemType(onnxpb.TensorProto_FLOAT16)
	Float64 = ElemType(onnxpb.TensorProto_DOUBLE)
	Int32   = ElemType(onnxpb.TensorProto_INT32)
	Int64   = ElemType(onnxpb.TensorProto_INT64)
)

// String returns the ONNX name of the type, such as "FLOAT16".
func (e ElemType) String() string { return onnxpb.TensorProto_DataType(e).String() }

// Dim is one dimension of a graph input or output: a fixed size or a symbolic name that ONNX
// Runtime binds at run time (the same name in several places must bind to the same size).
type Dim struct {
	size int64
	name string
}

// Fixed is a dimension of size n.
func Fixed(n int64) Dim { return Dim{size: n} }

// Sym is a dynamic dimension called name, such as "batch".
func Sym(name string) Dim { return Dim{name: name} }

// String returns the size, or the name of a symbolic dimension.
func (d Dim) String() string {
	if d.name != "" {
		return d.name
	}
	return strconv.FormatInt(d.size, 10)
}

// Attr is a node attribute, made by AttrInt, AttrInts, AttrFloat, AttrFloats, AttrString or
// AttrTensor.
type Attr struct {
	proto *onnxpb.AttributeProto
}

// AttrInt is an integer attribute, such as Softmax's axis.
func AttrInt(name string, v int64) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}}
}

// AttrInts is a list-of-integers attribute, such as Transpose's perm.
func AttrInts(name string, v ...int64) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: append([]int64(nil), v...)}}
}

// AttrFloat is a float attribute, such as Gemm's alpha.
func AttrFloat(name string, v float32) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOAT, F: v}}
}

// AttrFloats is a list-of-floats attribute.
func AttrFloats(name string, v ...float32) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOATS, Floats: append([]float32(nil), v...)}}
}

// AttrString is a string attribute, such as Resize's mode.
func AttrString(name, v string) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}}
}

// AttrTensor is a tensor attribute, such as Constant's value or ConstantOfShape's value; build
// the tensor with FloatTensor or Int64Tensor.
func AttrTensor(name string, t *onnxpb.TensorProto) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_TENSOR, T: t}}
}

// FloatTensor is an unnamed float32 tensor holding data (little-endian raw_data), for AttrTensor.
// It returns an error if data does not have the number of elements dims describe.
func FloatTensor(dims []int64, data []float32) (*onnxpb.TensorProto, error) {
	if err := checkSize(dims, len(data)); err != nil {
		return nil, err
	}
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnxpb.TensorProto{Dims: append([]int64(nil), dims...), DataType: int32(Float32), RawData: raw}, nil
}

// Int64Tensor is an unnamed int64 tensor holding data (little-endian raw_data), for AttrTensor.
// It returns an error if data does not have the number of elements dims describe.
func Int64Tensor(dims []int64, data []int64) (*onnxpb.TensorProto, error) {
	if err := checkSize(dims, len(data)); err != nil {
		return nil, err
	}
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return &onnxpb.TensorProto{Dims: append([]int64(nil), dims...), DataType: int32(Int64), RawData: raw}, nil
}

// checkSize reports whether n elements fill a tensor of shape dims (an empty dims is a scalar).
func checkSize(dims []int64, n int) error {
	want := int64(1)
	for _, d := range dims {
		if d < 0 {
			return fmt.Errorf("tensor dims %v: negative dimension", dims)
		}
		want *= d
	}
	if want != int64(n) {
		return fmt.Errorf("tensor dims %v need %d elements, got %d", dims, want, n)
	}
	return nil
}

// Graph is an ONNX graph under construction. Values are named by strings; every value must be
// defined (as an input, an initializer or a node output) exactly once, before the nodes that
// read it. The zero Graph is not usable: call New.
type Graph struct {
	opset   int64
	doc     string
	meta    []*onnxpb.StringStringEntryProto
	g       *onnxpb.GraphProto
	defined map[string]bool // values defined so far: inputs, initializers, node outputs
	used    map[string]bool // every name handed out or defined, so Fresh never collides
	fresh   int
	err     error
}

// New starts an empty graph called name that imports the default ONNX operator set at version
// opset.
func New(name string, opset int64) *Graph {
	return &Graph{
		opset:   opset,
		g:       &onnxpb.GraphProto{Name: name},
		defined: map[string]bool{},
		used:    map[string]bool{},
	}
}

// fail records err unless an earlier error is already recorded: the first mistake is the one
// worth reading, later ones often follow from it.
func (g *Graph) fail(err error) {
	if g.err == nil {
		g.err = err
	}
}

// define marks name as a defined value, recording an error if it is empty or already defined.
func (g *Graph) define(name, what string) {
	switch {
	case name == "":
		g.fail(fmt.Errorf("graph %q: %s with an empty name", g.g.Name, what))
	case g.defined[name]:
		g.fail(fmt.Errorf("graph %q: %s %q: value already defined", g.g.Name, what, name))
	}
	g.defined[name] = true
	g.used[name] = true
}

// Fresh returns a new value name starting with prefix that no value of the graph uses, for
// intermediate results. Names are numbered in call order, so the same building code always
// yields the same names.
func (g *Graph) Fresh(prefix string) string {
	for {
		name := prefix + "_" + strconv.Itoa(g.fresh)
		g.fresh++
		if !g.used[name] {
			g.used[name] = true
			return name
		}
	}
}

// Doc sets the model's doc_string.
func (g *Graph) Doc(s string) { g.doc = s }

// Meta adds a metadata_props entry (ONNX Runtime exposes them as custom metadata); entries are
// written in the order they were added.
func (g *Graph) Meta(key, value string) {
	g.meta = append(g.meta, &onnxpb.StringStringEntryProto{Key: key, Value: value})
}

// valueInfo describes a tensor value of type elem and shape dims.
func valueInfo(name string, elem ElemType, dims []Dim) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d.name != "" {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.name}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.size}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{
		Name: name,
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(elem), Shape: shape},
		}},
	}
}

// checkDims records an error for a negative fixed dimension.
func (g *Graph) checkDims(name string, dims []Dim) {
	for _, d := range dims {
		if d.name == "" && d.size < 0 {
			g.fail(fmt.Errorf("graph %q: value %q: negative dimension %d", g.g.Name, name, d.size))
		}
	}
}

// Input declares a graph input of type elem and shape dims (no dims: a scalar) and returns name.
func (g *Graph) Input(name string, elem ElemType, dims ...Dim) string {
	g.define(name, "input")
	g.checkDims(name, dims)
	g.g.Input = append(g.g.Input, valueInfo(name, elem, dims))
	return name
}

// Output declares name, which a node (or an input or initializer) defines, as a graph output of
// type elem and shape dims, and returns name. Outputs may be declared before the node that
// computes them.
func (g *Graph) Output(name string, elem ElemType, dims ...Dim) string {
	if name == "" {
		g.fail(fmt.Errorf("graph %q: output with an empty name", g.g.Name))
	}
	g.checkDims(name, dims)
	g.used[name] = true
	g.g.Output = append(g.g.Output, valueInfo(name, elem, dims))
	return name
}

// addInitializer names t and adds it to the graph.
func (g *Graph) addInitializer(name string, t *onnxpb.TensorProto, err error) string {
	if err != nil {
		g.fail(fmt.Errorf("graph %q: initializer %q: %w", g.g.Name, name, err))
		return name
	}
	g.define(name, "initializer")
	t.Name = name
	g.g.Initializer = append(g.g.Initializer, t)
	return name
}

// Initializer adds a float32 constant of shape dims (empty: a scalar) holding data, stored as
// little-endian raw_data, and returns name. data is copied.
func (g *Graph) Initializer(name string, dims []int64, data []float32) string {
	t, err := FloatTensor(dims, data)
	return g.addInitializer(name, t, err)
}

// InitializerInt64 adds an int64 constant of shape dims holding data, as Initializer does.
func (g *Graph) InitializerInt64(name string, dims []int64, data []int64) string {
	t, err := Int64Tensor(dims, data)
	return g.addInitializer(name, t, err)
}

// Scalar adds a float32 scalar constant under a fresh name and returns the name.
func (g *Graph) Scalar(v float32) string {
	return g.Initializer(g.Fresh("const"), nil, []float32{v})
}

// Int64s adds a one-dimensional int64 constant under a fresh name and returns the name: the
// shape of a Reshape, the axes of an Unsqueeze.
func (g *Graph) Int64s(v ...int64) string {
	return g.InitializerInt64(g.Fresh("const"), []int64{int64(len(v))}, v)
}

// Node appends a node running op (default ONNX domain) on inputs and defining outputs. An empty
// input name marks an omitted optional input. Nodes must be appended in an order where every
// input is defined before it is read.
func (g *Graph) Node(op string, inputs, outputs []string, attrs ...Attr) {
	for _, in := range inputs {
		if in != "" && !g.defined[in] {
			g.fail(fmt.Errorf("graph %q: %s node reads %q, which is not defined yet", g.g.Name, op, in))
		}
	}
	if len(outputs) == 0 {
		g.fail(fmt.Errorf("graph %q: %s node without outputs", g.g.Name, op))
	}
	for _, out := range outputs {
		g.define(out, op+" output")
	}
	n := &onnxpb.NodeProto{
		Name:   op + "_" + strconv.Itoa(len(g.g.Node)),
		OpType: op,
		Input:  append([]string(nil), inputs...),
		Output: append([]string(nil), outputs...),
	}
	for _, a := range attrs {
		if a.proto == nil {
			g.fail(fmt.Errorf("graph %q: %s node: zero Attr", g.g.Name, op))
			continue
		}
		n.Attribute = append(n.Attribute, a.proto)
	}
	g.g.Node = append(g.g.Node, n)
}

// Op appends a node with a single output under a fresh name derived from op, and returns that
// name, so that expressions nest: g.Op("Add", []string{g.Op("MatMul", []string{x, w}), b}).
func (g *Graph) Op(op string, inputs []string, attrs ...Attr) string {
	out := g.Fresh(op)
	g.Node(op, inputs, []string{out}, attrs...)
	return out
}

// Model returns the finished ModelProto: IR version 8, the default-domain opset given to New,
// producer "fksteer". It returns the first error recorded while building, or an error if a
// declared output is never defined. The graph may still be extended afterwards.
func (g *Graph) Model() (*onnxpb.ModelProto, error) {
	if g.err != nil {
		return nil, g.err
	}
	if len(g.g.Output) == 0 {
		return nil, fmt.Errorf("graph %q has no outputs", g.g.Name)
	}
	for _, out := range g.g.Output {
		if !g.defined[out.Name] {
			return nil, fmt.Errorf("graph %q: output %q is never defined", g.g.Name, out.Name)
		}
	}
	return &onnxpb.ModelProto{
		IrVersion:     IRVersion,
		OpsetImport:   []*onnxpb.OperatorSetIdProto{{Domain: "", Version: g.opset}},
		ProducerName:  Producer,
		DocString:     g.doc,
		Graph:         g.g,
		MetadataProps: g.meta,
	}, nil
}

// Marshal serialises the model (see Model). The bytes are deterministic: the same building code
// gives the same bytes, so a content hash can name the file.
func (g *Graph) Marshal() ([]byte, error) {
	m, err := g.Model()
	if err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("graph %q: marshal: %w", g.g.Name, err)
	}
	return b, nil
}
