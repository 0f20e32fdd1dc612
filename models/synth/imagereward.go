package synth

import (
	"fmt"
	"math"

	"github.com/fksteer/fksteer/models/onnxgraph"
)

// Tensor names of the ImageReward layout besides pixel_values and input_ids.
const (
	// AttentionMask is int64 [batch, text length]: 1 over [CLS], the prompt and [SEP], 0 over
	// the padding, as BERT's tokenizer returns it.
	AttentionMask = "attention_mask"
	// Rewards is float32 [batch, 1]: ImageReward's MLP output before its normalisation
	// (r - 0.16717362830052426) / 1.0333394966054072, which the preference reward applies.
	Rewards = "rewards"
)

// BLIPText configures the text tower of [ImageReward]: Length token ids per prompt (35 for
// ImageReward), folded onto a table of Vocab embeddings (id mod Vocab) to keep the model
// small; bert-base-uncased has 30,522 ids.
type BLIPText struct {
	Length, Vocab int
}

// ImageReward builds a scorer with the layout of ImageReward (BLIP's ViT and BERT text encoder
// with cross-attention, then an MLP) exported to ONNX as one graph:
//
//	pixel_values   float32 [batch, 3, Size, Size] (CLIP-normalised, 224 for the real model)
//	input_ids      int64   [batch, Length]        (bert-base-uncased ids, [CLS] first, padded with 0)
//	attention_mask int64   [batch, Length]        (1 over the prompt, 0 over the padding)
//	-> rewards     float32 [batch, 1]             (the raw score, before normalisation)
//
// Row i of the text inputs goes with image i. As in BLIP's text encoder, the token embeddings
// plus position embeddings go through self-attention in which a padded key gets -10000 added
// to its scores (BERT's extended attention mask), then cross-attention from every token to all
// image tokens, then an MLP; the score is a small MLP on the hidden state of token 0, [CLS].
// One block of each, with c.Dim features for image and text alike, stands for BLIP's twelve.
func ImageReward(c ViT, t BLIPText) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if t.Length <= 0 || t.Vocab <= 0 {
		return nil, fmt.Errorf("synth: BLIPText %+v: need positive Length and Vocab", t)
	}
	b := newBuilder("imagereward", c.Seed)
	g, d, l := b.g, int64(c.Dim), int64(t.Length)
	batch := onnxgraph.Sym("batch")
	image := b.vision(c, "batch") // [batch, tokens, d]

	ids := g.Input(InputIDs, onnxgraph.Int64, batch, onnxgraph.Fixed(l))
	mask := g.Input(AttentionMask, onnxgraph.Int64, batch, onnxgraph.Fixed(l))
	emb := g.Op("Gather", []string{b.weight("word_embeddings", 1, int64(t.Vocab), d),
		g.Op("Mod", []string{ids, g.Int64s(int64(t.Vocab))})})
	x := b.layerNorm(g.Op("Add", []string{emb, b.weight("position_embeddings", 0.5, 1, l, d)}), d)

	// (mask - 1) * 10000, as [batch, 1, Length]: 0 for a real key, -10000 for a padded one.
	keyBias := g.Op("Unsqueeze", []string{
		g.Op("Mul", []string{
			g.Op("Sub", []string{g.Op("Cast", []string{mask}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32))), g.Scalar(1)}),
			g.Scalar(10000)}),
		g.Int64s(1)})
	x = b.attend(x, x, keyBias, d)
	x = b.attend(x, image, "", d)
	h := g.Op("Tanh", []string{b.linear(b.layerNorm(x, d), d, 2*d, true)})
	x = g.Op("Add", []string{x, b.linear(h, 2*d, d, true)})

	// ImageReward's MLP is five linear layers without activations; two stand for it.
	cls := b.firstToken(x, d)
	g.Node("Identity", []string{b.linear(b.linear(cls, d, 16, true), 16, 1, true)}, []string{Rewards})
	g.Output(Rewards, onnxgraph.Float32, batch, onnxgraph.Fixed(1))
	return marshal(g)
}

// attend is a pre-norm residual single-head attention of the tokens of x [batch, n, dim] over
// those of ctx [batch, m, dim] (ctx == x for self-attention, where the queries, keys and values
// all come from the normalised x). keyBias, if not "", is added to the scores, broadcast from
// [batch, 1, m].
func (b *builder) attend(x, ctx, keyBias string, dim int64) string {
	g := b.g
	h := b.layerNorm(x, dim)
	kv := h
	if ctx != x {
		kv = ctx
	}
	q, k, v := b.linear(h, dim, dim, true), b.linear(kv, dim, dim, true), b.linear(kv, dim, dim, true)
	scores := g.Op("Mul", []string{
		g.Op("MatMul", []string{q, g.Op("Transpose", []string{k}, onnxgraph.AttrInts("perm", 0, 2, 1))}),
		g.Scalar(float32(1 / math.Sqrt(float64(dim))))})
	if keyBias != "" {
		scores = g.Op("Add", []string{scores, keyBias})
	}
	att := g.Op("Softmax", []string{scores}, onnxgraph.AttrInt("axis", -1))
	return g.Op("Add", []string{x, b.linear(g.Op("MatMul", []string{att, v}), dim, dim, true)})
}
