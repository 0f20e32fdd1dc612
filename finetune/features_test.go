package finetune_test

import (
	"context"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/onnxgraph"
	"github.com/fksteer/fksteer/pixels"
)

// Sizes of the synthetic ViT: DINOv2's layout (224x224 input, 14x14 patches, so 256 patch
// tokens, CLS first, then register tokens) with a tiny width.
const (
	vitDim       = 8
	vitRegisters = 4
	vitPatches   = 256
	vitRegister  = 1000 // every register token's value: unmistakable if a patch slot picks one up
)

// vitCLSBias is added to the synthetic CLS token.
var vitCLSBias = []float32{0.5, -1, 2, 0, 0.25, -0.75, 1.5, 3}

// syntheticViT builds a ViT-shaped ONNX model with DINOv2's tensor names and layout:
// pixel_values [B,3,224,224] -> last_hidden_state [B, 1+4+256, 8]. Patch tokens are a random
// (seeded) 14x14/stride-14 convolution of the image, CLS is their mean plus vitCLSBias, and the
// four register tokens are constant.
func syntheticViT(t *testing.T) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	w := make([]float32, vitDim*3*14*14)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	regs := make([]float32, vitRegisters*vitDim)
	for i := range regs {
		regs[i] = vitRegister
	}
	g := onnxgraph.New("synthetic-dinov2", 17)
	x := g.Input("pixel_values", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(3), onnxgraph.Fixed(224), onnxgraph.Fixed(224))
	conv := g.Op("Conv", []string{x, g.Initializer("patch_embed", []int64{vitDim, 3, 14, 14}, w)},
		onnxgraph.AttrInts("kernel_shape", 14, 14), onnxgraph.AttrInts("strides", 14, 14))
	flat := g.Op("Reshape", []string{conv, g.Int64s(0, vitDim, -1)})
	patches := g.Op("Transpose", []string{flat}, onnxgraph.AttrInts("perm", 0, 2, 1))
	mean := g.Op("ReduceMean", []string{patches}, onnxgraph.AttrInts("axes", 1), onnxgraph.AttrInt("keepdims", 1))
	cls := g.Op("Add", []string{mean, g.Initializer("cls_bias", []int64{1, 1, vitDim}, vitCLSBias)})
	reg := g.Op("Add", []string{g.Op("Mul", []string{mean, g.Scalar(0)}), g.Initializer("registers", []int64{1, vitRegisters, vitDim}, regs)})
	g.Node("Concat", []string{cls, reg, patches}, []string{"last_hidden_state"}, onnxgraph.AttrInt("axis", 1))
	g.Output("last_hidden_state", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(1+vitRegisters+vitPatches), onnxgraph.Fixed(vitDim))
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dinov2-synthetic.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func openViT(t *testing.T, path string, patches int) *finetune.ViT {
	t.Helper()
	v, err := finetune.OpenViT(path, finetune.ViTOptions{Registers: vitRegisters, Patches: patches})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// TestViTFeatures: CLS is token 0, the registers are skipped, and the kept patch tokens are the
// evenly spaced ones; checked against the synthetic model's own definition (CLS = mean of the
// patch tokens + bias).
func TestViTFeatures(t *testing.T) {
	modeltest.Runtime(t)
	path := syntheticViT(t)
	imgs := pixels.NewImages(2, 3, 32, 32)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range imgs.Pix {
		imgs.Pix[i] = rng.Float32()
	}
	all, err := openViT(t, path, -1).Extract(context.Background(), imgs)
	if err != nil {
		t.Fatal(err)
	}
	if all.N != 2 || all.Dim != vitDim || all.Patches != vitPatches || len(all.CLS) != 2*vitDim || len(all.PatchTokens) != 2*vitPatches*vitDim {
		t.Fatalf("features N=%d dim=%d patches=%d", all.N, all.Dim, all.Patches)
	}
	for i := range 2 {
		for d := range vitDim {
			var mean float64
			for p := range vitPatches {
				v := all.PatchTokens[(i*vitPatches+p)*vitDim+d]
				if v == vitRegister {
					t.Fatalf("image %d patch %d holds a register token", i, p)
				}
				mean += float64(v) / vitPatches
			}
			if got := float64(all.CLS[i*vitDim+d] - vitCLSBias[d]); math.Abs(got-mean) > 1e-4 {
				t.Errorf("image %d CLS[%d] - bias = %g, mean of patches %g", i, d, got, mean)
			}
		}
	}
	some, err := openViT(t, path, 4).Extract(context.Background(), imgs)
	if err != nil {
		t.Fatal(err)
	}
	if some.Patches != 4 || !slices.Equal(some.CLS, all.CLS) {
		t.Fatalf("4 patches: got %d, CLS equal %v", some.Patches, slices.Equal(some.CLS, all.CLS))
	}
	for i := range 2 {
		for j, p := range []int{0, 64, 128, 192} {
			got := some.PatchTokens[(i*4+j)*vitDim : (i*4+j+1)*vitDim]
			want := all.PatchTokens[(i*vitPatches+p)*vitDim : (i*vitPatches+p+1)*vitDim]
			if !slices.Equal(got, want) {
				t.Errorf("image %d kept patch %d is not token %d", i, j, p)
			}
		}
	}
}

// writeReference writes a solid-colour PNG reference image of size n x n.
func writeReference(t *testing.T, path string, c color.NRGBA, n int) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	for i := range n * n {
		img.SetNRGBA(i%n, i/n, c)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// TestExportAdvGRPO: an Adv-GRPO dataset holds, per group, the samples' CLS features and sampled
// patch tokens, the same for the prompt's reference images (copied beside the data), and GRPO
// advantages.
func TestExportAdvGRPO(t *testing.T) {
	p := openGlyphs(t)
	vit := openViT(t, syntheticViT(t), 8)
	refDir := t.TempDir()
	refs := map[string][]string{}
	for i, prompt := range []string{`a red "R"`, `"S" on navy`} {
		for j := range 2 + i {
			path := filepath.Join(refDir, prompt[3:4]+string(rune('a'+j))+".png")
			writeReference(t, path, color.NRGBA{uint8(200 - 50*j), 30, uint8(40 * i), 255}, 40+8*j)
			refs[prompt] = append(refs[prompt], path)
		}
	}
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.AdvGRPO, out, `a red "R"`, `"S" on navy`)
	o.References, o.Features = refs, vit
	export(t, p, o)
	d := openDataset(t, out)
	for gi, prompt := range o.Prompts {
		r := d.Rows[gi*4]
		if len(r.References) != len(refs[prompt]) {
			t.Fatalf("%s: references %v for %v", r.ID, r.References, refs[prompt])
		}
		for j, ref := range r.References {
			got, err := os.ReadFile(filepath.Join(out, ref))
			if err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(refs[prompt][j])
			if !slices.Equal(got, want) {
				t.Errorf("%s is not a copy of %s", ref, refs[prompt][j])
			}
		}
		shapes := map[string][]int{
			finetune.KeyFeatureCLS: {4, vitDim}, finetune.KeyFeaturePatches: {4, 8, vitDim},
			finetune.KeyRefCLS: {len(refs[prompt]), vitDim}, finetune.KeyRefPatches: {len(refs[prompt]), 8, vitDim},
		}
		for name, shape := range shapes {
			tensor, err := d.Tensor(r, name)
			if err != nil {
				t.Fatal(err)
			}
			if tensor.Dtype != finetune.F32 || !slices.Equal(tensor.Shape, shape) {
				t.Errorf("%s: %s is %s %v, want F32 %v", r.ID, name, tensor.Dtype, tensor.Shape, shape)
			}
		}
		// The exported CLS of the first reference is what the extractor gives for that image.
		refImg := decodePNG(t, refs[prompt][0])
		f, err := vit.Extract(context.Background(), refImg)
		if err != nil {
			t.Fatal(err)
		}
		cls, _ := d.Tensor(r, finetune.KeyRefCLS)
		v, _ := cls.Float32()
		if !slices.Equal(v[:vitDim], f.CLS) {
			t.Errorf("%s: exported reference CLS %v, extractor %v", r.ID, v[:vitDim], f.CLS)
		}
		var sum float64
		for _, row := range d.Rows[gi*4 : gi*4+4] {
			sum += float64(row.Advantage)
		}
		if math.Abs(sum) > 1e-9 {
			t.Errorf("group %d: advantages sum to %g", gi, sum)
		}
	}
}

func decodePNG(t *testing.T, path string) pixels.Images {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	out := pixels.NewImages(1, 3, b.Dy(), b.Dx())
	plane := b.Dx() * b.Dy()
	for y := range b.Dy() {
		for x := range b.Dx() {
			r, g, bl, _ := img.At(x, y).RGBA()
			j := y*b.Dx() + x
			out.Pix[j], out.Pix[plane+j], out.Pix[2*plane+j] = float32(r)/0xffff, float32(g)/0xffff, float32(bl)/0xffff
		}
	}
	return out
}
