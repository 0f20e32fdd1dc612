package synth

import (
	"fmt"

	"github.com/fksteer/fksteer/models/onnxgraph"
)

// CLIPText configures the text tower of [CLIPScorer]: Length token ids per prompt (77 for
// CLIP), folded onto a table of Vocab embeddings (id mod Vocab) to keep the model small.
type CLIPText struct {
	Length, Vocab int
}

// LogitScale is the scorer's exp(logit_scale): CLIP's trained value, 100.
const LogitScale = 100

// CLIPScorer builds an image-text scorer shaped as transformers' CLIPModel exports to ONNX, the
// layout of CLIP score, PickScore and HPSv2 models: pixel_values [image_batch, 3, Size, Size]
// and input_ids int64 [text_batch, Length] -> logits_per_image [image_batch, text_batch]
// (LogitScale times the cosine similarity), logits_per_text (its transpose), and the
// L2-normalised text_embeds and image_embeds [*, proj]. The text is pooled at the first
// position of its largest id (CLIP's end-of-text token, 49407).
func CLIPScorer(c ViT, t CLIPText, proj int) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if t.Length <= 0 || t.Vocab <= 0 {
		return nil, fmt.Errorf("synth: CLIPText %+v: need positive Length and Vocab", t)
	}
	b := newBuilder("clip", c.Seed)
	g, d, p, l := b.g, int64(c.Dim), int64(proj), int64(t.Length)
	image := b.linear(b.layerNorm(b.firstToken(b.vision(c, "image_batch"), d), d), d, p, false)

	ids := g.Input(InputIDs, onnxgraph.Int64, onnxgraph.Sym("text_batch"), onnxgraph.Fixed(l))
	emb := g.Op("Gather", []string{b.weight("token_embedding", 1, int64(t.Vocab), d),
		g.Op("Mod", []string{ids, g.Int64s(int64(t.Vocab))})})
	hidden := b.layerNorm(b.block(g.Op("Add", []string{emb, b.weight("text_pos", 0.02, 1, l, d)}), d), d)
	eos := g.Op("ArgMax", []string{g.Op("Cast", []string{ids}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))},
		onnxgraph.AttrInt("axis", 1), onnxgraph.AttrInt("keepdims", 1)) // [text_batch, 1]
	positions := make([]int64, l)
	for i := range positions {
		positions[i] = int64(i)
	}
	pos := g.InitializerInt64(g.Fresh("positions"), []int64{1, l}, positions)
	onehot := g.Op("Cast", []string{g.Op("Equal", []string{pos, eos})}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))
	pooled := g.Op("Reshape", []string{g.Op("MatMul", []string{g.Op("Unsqueeze", []string{onehot, g.Int64s(1)}), hidden}), g.Int64s(0, d)})
	text := b.linear(pooled, d, p, false)

	g.Node("Identity", []string{b.l2Normalize(image)}, []string{ImageEmbeds})
	g.Node("Identity", []string{b.l2Normalize(text)}, []string{TextEmbeds})
	sim := g.Op("MatMul", []string{ImageEmbeds, g.Op("Transpose", []string{TextEmbeds}, onnxgraph.AttrInts("perm", 1, 0))})
	g.Node("Mul", []string{sim, g.Scalar(LogitScale)}, []string{LogitsPerImage})
	g.Node("Transpose", []string{LogitsPerImage}, []string{LogitsPerText}, onnxgraph.AttrInts("perm", 1, 0))
	ib, tb := onnxgraph.Sym("image_batch"), onnxgraph.Sym("text_batch")
	g.Output(LogitsPerImage, onnxgraph.Float32, ib, tb)
	g.Output(LogitsPerText, onnxgraph.Float32, tb, ib)
	g.Output(TextEmbeds, onnxgraph.Float32, tb, onnxgraph.Fixed(p))
	g.Output(ImageEmbeds, onnxgraph.Float32, ib, onnxgraph.Fixed(p))
	return marshal(g)
}
