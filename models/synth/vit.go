package synth

import (
	"fmt"
	"math"

	"github.com/fksteer/fksteer/models/onnxgraph"
)

// ViT configures a vision transformer: Size x Size RGB inputs cut into (Size/Patch)^2 patches,
// Dim features per token, and Registers register tokens between the class token and the
// patches (DINOv2 "with registers" has 4). Seed fixes the weights.
type ViT struct {
	Size, Patch, Dim, Registers int
	Seed                        uint64
}

// Patches is the number of patch tokens, (Size/Patch)^2.
func (c ViT) Patches() int { return (c.Size / c.Patch) * (c.Size / c.Patch) }

// Tokens is the number of output tokens: the class token, the registers and the patches.
func (c ViT) Tokens() int { return 1 + c.Registers + c.Patches() }

func (c ViT) validate() error {
	if c.Patch <= 0 || c.Size <= 0 || c.Size%c.Patch != 0 || c.Dim <= 0 || c.Registers < 0 {
		return fmt.Errorf("synth: ViT %+v: need Size a positive multiple of Patch, Dim > 0, Registers >= 0", c)
	}
	return nil
}

// vision adds the pixel_values input and a ViT trunk, and returns its final hidden state
// [batch, Tokens, Dim]: the class token (its position embedding folded in), the registers
// (which, as in DINOv2, get none), then the patch tokens.
func (b *builder) vision(c ViT, batch string) string {
	g := b.g
	s, p, d, n := int64(c.Size), int64(c.Patch), int64(c.Dim), int64(c.Patches())
	x := g.Input(PixelValues, onnxgraph.Float32, onnxgraph.Sym(batch), onnxgraph.Fixed(3), onnxgraph.Fixed(s), onnxgraph.Fixed(s))
	patches := g.Op("Conv", []string{x, b.weight("patch_w", 1/math.Sqrt(float64(3*p*p)), d, 3, p, p), b.weight("patch_b", 0.02, d)},
		onnxgraph.AttrInts("kernel_shape", p, p), onnxgraph.AttrInts("strides", p, p))
	patches = g.Op("Transpose", []string{g.Op("Reshape", []string{patches, g.Int64s(0, d, -1)})}, onnxgraph.AttrInts("perm", 0, 2, 1))
	patches = g.Op("Add", []string{patches, b.weight("pos", 0.02, 1, n, d)})
	zeros := b.zerosLike3(patches)
	tokens := []string{g.Op("Add", []string{zeros, b.weight("cls", 0.5, 1, 1, d)})}
	if c.Registers > 0 {
		tokens = append(tokens, g.Op("Add", []string{zeros, b.weight("registers", 0.5, 1, int64(c.Registers), d)}))
	}
	tokens = append(tokens, patches)
	return b.layerNorm(b.block(g.Op("Concat", tokens, onnxgraph.AttrInt("axis", 1)), d), d)
}

// DINOv2 builds a DINOv2-shaped backbone as transformers' Dinov2Model exports to ONNX:
// pixel_values [batch, 3, Size, Size] -> last_hidden_state [batch, Tokens, Dim] (class token
// first, then the registers, then the patches in row-major order) and pooler_output
// [batch, Dim] (the class token).
func DINOv2(c ViT) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	b := newBuilder("dinov2", c.Seed)
	g, d := b.g, int64(c.Dim)
	hidden := b.vision(c, "batch")
	g.Node("Identity", []string{hidden}, []string{LastHiddenState})
	g.Node("Identity", []string{b.firstToken(hidden, d)}, []string{PoolerOutput})
	g.Output(LastHiddenState, onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(int64(c.Tokens())), onnxgraph.Fixed(d))
	g.Output(PoolerOutput, onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(d))
	return marshal(g)
}

// CLIPVision builds a CLIP-shaped image encoder as transformers' CLIPVisionModelWithProjection
// exports to ONNX: pixel_values [batch, 3, Size, Size] -> image_embeds [batch, proj] (the
// layer-normed class token projected without bias, not normalised) and last_hidden_state.
// With Size 224, Patch 32 and proj 512 it has the layout of CLIP ViT-B/32's, the encoder in
// front of the LAION aesthetic head.
func CLIPVision(c ViT, proj int) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	b := newBuilder("clip_vision", c.Seed)
	g, d := b.g, int64(c.Dim)
	hidden := b.vision(c, "batch")
	g.Node("Identity", []string{b.linear(b.layerNorm(b.firstToken(hidden, d), d), d, int64(proj), false)}, []string{ImageEmbeds})
	g.Node("Identity", []string{hidden}, []string{LastHiddenState})
	g.Output(ImageEmbeds, onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(int64(proj)))
	g.Output(LastHiddenState, onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(int64(c.Tokens())), onnxgraph.Fixed(d))
	return marshal(g)
}

func marshal(g *onnxgraph.Graph) ([]byte, error) {
	data, err := g.Marshal()
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	return data, nil
}
