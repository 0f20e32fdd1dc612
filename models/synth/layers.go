package synth

import (
	"math"
	"math/rand/v2"

	"github.com/fksteer/fksteer/models/onnxgraph"
)

// builder adds layers with seeded random weights to a graph.
type builder struct {
	g   *onnxgraph.Graph
	rng *rand.Rand
}

func newBuilder(name string, seed uint64) *builder {
	return &builder{g: onnxgraph.New(name, Opset), rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// weight adds an initializer of normal values with standard deviation std.
func (b *builder) weight(name string, std float64, dims ...int64) string {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return b.g.Initializer(b.g.Fresh(name), dims, b.randn(std, n))
}

// randn draws n normal values with standard deviation std.
func (b *builder) randn(std float64, n int64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(b.rng.NormFloat64() * std)
	}
	return v
}

// ones adds an initializer of ones.
func (b *builder) ones(name string, dims ...int64) string {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return b.g.Initializer(b.g.Fresh(name), dims, v)
}

// linear is x W (+ bias) over the last axis, from in to out features.
func (b *builder) linear(x string, in, out int64, bias bool) string {
	y := b.g.Op("MatMul", []string{x, b.weight("w", 1/math.Sqrt(float64(in)), in, out)})
	if bias {
		y = b.g.Op("Add", []string{y, b.weight("b", 0.02, out)})
	}
	return y
}

// layerNorm normalises the last axis (dim features) with a unit scale and a small random bias.
func (b *builder) layerNorm(x string, dim int64) string {
	return b.g.Op("LayerNormalization", []string{x, b.ones("ln_scale", dim), b.weight("ln_bias", 0.02, dim)},
		onnxgraph.AttrInt("axis", -1))
}

// block is one pre-norm transformer block on x [batch, tokens, dim]: single-head
// self-attention and a tanh MLP, each with a residual connection.
func (b *builder) block(x string, dim int64) string {
	g := b.g
	h := b.layerNorm(x, dim)
	q, k, v := b.linear(h, dim, dim, true), b.linear(h, dim, dim, true), b.linear(h, dim, dim, true)
	att := g.Op("MatMul", []string{q, g.Op("Transpose", []string{k}, onnxgraph.AttrInts("perm", 0, 2, 1))})
	att = g.Op("Softmax", []string{g.Op("Mul", []string{att, g.Scalar(float32(1 / math.Sqrt(float64(dim))))})}, onnxgraph.AttrInt("axis", -1))
	x = g.Op("Add", []string{x, b.linear(g.Op("MatMul", []string{att, v}), dim, dim, true)})
	h = g.Op("Tanh", []string{b.linear(b.layerNorm(x, dim), dim, 2*dim, true)})
	return g.Op("Add", []string{x, b.linear(h, 2*dim, dim, true)})
}

// zerosLike3 is a [batch, 1, dim] tensor of zeros shaped after x [batch, n, dim]: adding a
// [1, m, dim] constant to it broadcasts the constant over the batch.
func (b *builder) zerosLike3(x string) string {
	g := b.g
	first := g.Op("Slice", []string{x, g.Int64s(0), g.Int64s(1), g.Int64s(1)})
	return g.Op("Mul", []string{first, g.Scalar(0)})
}

// firstToken returns token 0 of x [batch, tokens, dim] as [batch, dim].
func (b *builder) firstToken(x string, dim int64) string {
	g := b.g
	return g.Op("Reshape", []string{g.Op("Slice", []string{x, g.Int64s(0), g.Int64s(1), g.Int64s(1)}), g.Int64s(0, dim)})
}

// l2Normalize divides each row of x [batch, dim] by its Euclidean norm.
func (b *builder) l2Normalize(x string) string {
	g := b.g
	norm := g.Op("Sqrt", []string{g.Op("ReduceSumSquare", []string{x}, onnxgraph.AttrInts("axes", 1), onnxgraph.AttrInt("keepdims", 1))})
	return g.Op("Div", []string{x, norm})
}
