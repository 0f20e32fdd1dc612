package synth

import (
	"math"
	"strconv"

	"github.com/fksteer/fksteer/models/onnxgraph"
)

// sdTextWeights are the weights of one synthetic text encoder. They are kept in Go, beside the
// graph built from them, so that the encoder's output for the empty prompt can be computed at
// build time (see sdTextWeights.forward and sdUNet).
type sdTextWeights struct {
	t        sdText
	vocab    int
	tok, pos []float32 // [vocab, D], [77, D]
	layers   []sdTextLayer
	lnBias   []float32 // [D]; the final norm's scale is one
	proj     []float32 // [D, proj], for CLIPTextModelWithProjection
}

// sdTextLayer is one causal layer: h + tanh(h Wa + ba + cummean(h) Wb).
type sdTextLayer struct {
	wa, ba, wb []float32 // [D, D], [D], [D, D]
}

func newSDTextWeights(t sdText, vocab int, seed uint64) *sdTextWeights {
	b := sdBuilder(t.folder, seed)
	d := t.dim
	w := &sdTextWeights{t: t, vocab: vocab}
	w.tok = b.randn(1, int64(vocab)*d)
	w.pos = b.randn(0.1, sdMaxLength*d)
	for range t.layers {
		std := 1 / math.Sqrt(float64(d))
		w.layers = append(w.layers, sdTextLayer{wa: b.randn(std, d*d), ba: b.randn(0.02, d), wb: b.randn(std, d*d)})
	}
	w.lnBias = b.randn(0.02, d)
	if t.proj > 0 {
		w.proj = b.randn(1/math.Sqrt(float64(d)), d*t.proj)
	}
	return w
}

// sdTextEncoder builds a CLIP-shaped causal text encoder from w: input_ids [batch_size,
// sequence_length] → token embedding (a Gather: ids must be below the vocabulary size) plus
// the position embedding sliced to the sequence length → causal layers → a final layer norm.
// Each layer mixes every position with the cumulative mean of the positions up to it,
// h + tanh(h Wa + ba + cummean(h) Wb), so position i sees positions <= i only, as under CLIP's
// causal mask. The pooled state is the final hidden state at the first position of the largest
// id (end of text), as CLIP pools.
//
// Outputs, in optimum's order: CLIPTextModel last_hidden_state, pooler_output; with projection
// (SDXL's text_encoder_2, CLIPTextModelWithProjection) text_embeds (pooled times a projection,
// no bias), last_hidden_state; then, for SDXL, hidden_states.0 (the embeddings) ...
// hidden_states.L (each layer's output, before the final norm).
func sdTextEncoder(s sdSpec, w *sdTextWeights) *onnxgraph.Graph {
	t := w.t
	b := sdBuilder(t.folder, 0) // no random draws: the weights are w's
	g, d := b.g, t.dim
	init := func(name string, data []float32, dims ...int64) string {
		return g.Initializer(g.Fresh(name), dims, data)
	}
	batch, seq := onnxgraph.Sym("batch_size"), onnxgraph.Sym("sequence_length")
	ids := g.Input(InputIDs, s.ids, batch, seq)
	if s.ids != onnxgraph.Int64 {
		ids = g.Op("Cast", []string{ids}, onnxgraph.AttrInt("to", int64(onnxgraph.Int64)))
	}
	seqLen := b.dim(ids, 1) // [1]

	emb := g.Op("Gather", []string{init("token_embedding", w.tok, int64(w.vocab), d), ids})
	pos := g.Op("Slice", []string{init("position_embedding", w.pos, sdMaxLength, d), g.Int64s(0), seqLen, g.Int64s(0)})
	h := g.Op("Add", []string{emb, pos})
	hidden := []string{h}
	// count[i] = i+1, the number of positions position i sees: [1, sequence_length, 1].
	count := g.Op("Reshape", []string{b.rangeFloat(seqLen, 1), g.Int64s(1, -1, 1)})
	axis := g.InitializerInt64(g.Fresh("axis"), nil, []int64{1})
	for _, l := range w.layers {
		cummean := g.Op("Div", []string{g.Op("CumSum", []string{h, axis}), count})
		mix := g.Op("Add", []string{g.Op("MatMul", []string{h, init("wa", l.wa, d, d)}), init("ba", l.ba, d)})
		mix = g.Op("Add", []string{mix, g.Op("MatMul", []string{cummean, init("wb", l.wb, d, d)})})
		h = g.Op("Add", []string{h, g.Op("Tanh", []string{mix})})
		hidden = append(hidden, h)
	}
	last := g.Op("LayerNormalization", []string{h, b.ones("ln_scale", d), init("ln_bias", w.lnBias, d)},
		onnxgraph.AttrInt("axis", -1), onnxgraph.AttrFloat("epsilon", sdLayerNormEps))

	eos := g.Op("ArgMax", []string{g.Op("Cast", []string{ids}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))},
		onnxgraph.AttrInt("axis", 1), onnxgraph.AttrInt("keepdims", 1)) // [batch, 1]
	positions := g.Op("Reshape", []string{g.Op("Range", []string{b.int64Scalar(0), b.scalarOf(seqLen), b.int64Scalar(1)}), g.Int64s(1, -1)})
	onehot := g.Op("Cast", []string{g.Op("Equal", []string{positions, eos})}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))
	pooled := g.Op("Reshape", []string{g.Op("MatMul", []string{g.Op("Unsqueeze", []string{onehot, g.Int64s(1)}), last}), g.Int64s(0, d)})

	if t.proj > 0 {
		proj := g.Op("MatMul", []string{pooled, init("text_projection", w.proj, d, t.proj)})
		b.floatOut(TextEmbeds, proj, s.float, batch, onnxgraph.Fixed(t.proj))
		b.floatOut(LastHiddenState, last, s.float, batch, seq, onnxgraph.Fixed(d))
	} else {
		b.floatOut(LastHiddenState, last, s.float, batch, seq, onnxgraph.Fixed(d))
		b.floatOut(PoolerOutput, pooled, s.float, batch, onnxgraph.Fixed(d))
	}
	if t.hidden {
		for i, h := range hidden {
			b.floatOut(HiddenStatesPrefix+strconv.Itoa(i), h, s.float, batch, seq, onnxgraph.Fixed(d))
		}
	}
	return g
}

// sdLayerNormEps is the final norm's epsilon (CLIP's layer_norm_eps).
const sdLayerNormEps = 1e-5

// sdTextOutput is what the text encoder computes for one prompt, in float64.
type sdTextOutput struct {
	hidden [][]float64 // hidden_states.0 ... hidden_states.L, each [S*D]
	last   []float64   // last_hidden_state [S*D]
	embeds []float64   // text_embeds [proj], with projection only
}

// forward runs the encoder in Go on one prompt's ids, as the graph does.
func (w *sdTextWeights) forward(ids []int) sdTextOutput {
	d, n := int(w.t.dim), len(ids)
	h := make([]float64, n*d)
	for i, id := range ids {
		for k := range d {
			h[i*d+k] = float64(w.tok[id*d+k]) + float64(w.pos[i*d+k])
		}
	}
	out := sdTextOutput{hidden: [][]float64{h}}
	for _, l := range w.layers {
		next := make([]float64, n*d)
		sum := make([]float64, d)
		for i := range n {
			for k := range d {
				sum[k] += h[i*d+k]
			}
			for o := range d {
				mix := float64(l.ba[o])
				for k := range d {
					mix += h[i*d+k]*float64(l.wa[k*d+o]) + sum[k]/float64(i+1)*float64(l.wb[k*d+o])
				}
				next[i*d+o] = h[i*d+o] + math.Tanh(mix)
			}
		}
		h = next
		out.hidden = append(out.hidden, h)
	}
	out.last = make([]float64, n*d)
	for i := range n {
		row := h[i*d : (i+1)*d]
		var mean, sq float64
		for _, v := range row {
			mean += v
		}
		mean /= float64(d)
		for _, v := range row {
			sq += (v - mean) * (v - mean)
		}
		inv := 1 / math.Sqrt(sq/float64(d)+sdLayerNormEps)
		for k, v := range row {
			out.last[i*d+k] = (v-mean)*inv + float64(w.lnBias[k])
		}
	}
	if w.proj != nil {
		eos := 0
		for i, id := range ids {
			if id > ids[eos] {
				eos = i
			}
		}
		p := int(w.t.proj)
		out.embeds = make([]float64, p)
		for o := range p {
			for k := range d {
				out.embeds[o] += out.last[eos*d+k] * float64(w.proj[k*p+o])
			}
		}
	}
	return out
}

// seqMean averages a [S*D] state over the sequence.
func seqMean(x []float64, d int) []float64 {
	m := make([]float64, d)
	n := len(x) / d
	for i := range n {
		for k := range d {
			m[k] += x[i*d+k] / float64(n)
		}
	}
	return m
}

// dim returns dimension axis of x as a one-element int64 tensor [1].
func (b *builder) dim(x string, axis int64) string {
	return b.g.Op("Shape", []string{x}, onnxgraph.AttrInt("start", axis), onnxgraph.AttrInt("end", axis+1))
}

// scalarOf turns a one-element tensor [1] into a scalar.
func (b *builder) scalarOf(x string) string {
	return b.g.Op("Squeeze", []string{x, b.g.Int64s(0)})
}

// int64Scalar adds an int64 scalar constant.
func (b *builder) int64Scalar(v int64) string {
	return b.g.InitializerInt64(b.g.Fresh("const"), nil, []int64{v})
}

// rangeFloat is [start, start+1, ..., start+n-1] as float32, for n given as a tensor [1].
func (b *builder) rangeFloat(n string, start int64) string {
	g := b.g
	limit := g.Op("Add", []string{b.scalarOf(n), b.int64Scalar(start)})
	r := g.Op("Range", []string{b.int64Scalar(start), limit, b.int64Scalar(1)})
	return g.Op("Cast", []string{r}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))
}
