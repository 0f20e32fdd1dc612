package finetune

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

// Features are a vision backbone's features of a batch of images: one CLS vector per image and,
// optionally, some of its patch tokens. Adv-GRPO trains on such features (DINO's) of its samples
// and of each prompt's reference images.
type Features struct {
	N, Dim int
	// CLS holds N*Dim values: image i's CLS token at CLS[i*Dim:].
	CLS []float32
	// Patches is the number of patch tokens kept per image (0: none); PatchTokens holds
	// N*Patches*Dim values.
	Patches     int
	PatchTokens []float32
}

// tensors returns the features as [N, Dim] and [N, Patches, Dim] tensors; none for nil features.
func (f *Features) tensors(cls, patches string) []Tensor {
	if f == nil {
		return nil
	}
	out := []Tensor{Float32Tensor(cls, []int{f.N, f.Dim}, f.CLS)}
	if f.Patches > 0 {
		out = append(out, Float32Tensor(patches, []int{f.N, f.Patches, f.Dim}, f.PatchTokens))
	}
	return out
}

// FeatureExtractor computes image features. Implementations are safe for concurrent use.
type FeatureExtractor interface {
	// Name identifies the backbone in the dataset's settings.
	Name() string
	// Extract returns the features of imgs (values in [0, 1], any size; grey images are repeated
	// to RGB).
	Extract(ctx context.Context, imgs pixels.Images) (*Features, error)
}

// ViTOptions describe a ViT backbone exported to ONNX the way DINOv2 exports are (Hugging Face
// transformers, optimum): pixel_values [B, 3, S, S] in, last_hidden_state [B, 1+R+P, D] out, where
// token 0 is CLS, R register tokens follow (4 in the "-reg" models, else 0) and then P patch
// tokens.
type ViTOptions struct {
	// Input and Output name the tensors; empty means pixel_values and last_hidden_state.
	Input, Output string
	// Size is the input resolution when the model leaves it dynamic (default 224).
	Size int
	// Registers is R, the number of register tokens between CLS and the patches.
	Registers int
	// Patches is how many patch tokens to keep per image: 0 none, -1 all, n > 0 n evenly spaced
	// ones (token i*P/n for i < n), the same for every image so that positions line up.
	Patches int
	// Mean and Std normalise each RGB channel of pixels in [0, 1]; zero means ImageNet's
	// (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225), which DINOv2 expects.
	Mean, Std [3]float64
}

// ViT is a [FeatureExtractor] running an ONNX ViT such as DINOv2. Images are resized to the
// model's resolution with bilinear interpolation (half-pixel centres) and normalised per channel.
type ViT struct {
	sess *models.Session
	o    ViTOptions
	size int
	name string
	mu   sync.Mutex
}

// OpenViT loads an ONNX ViT backbone. It checks the input is a float [B, 3, S, S] tensor and the
// output a float [B, tokens, D] one.
func OpenViT(path string, o ViTOptions, opts ...models.Option) (*ViT, error) {
	if o.Input == "" {
		o.Input = "pixel_values"
	}
	if o.Output == "" {
		o.Output = "last_hidden_state"
	}
	if o.Mean == ([3]float64{}) {
		o.Mean = [3]float64{0.485, 0.456, 0.406}
	}
	if o.Std == ([3]float64{}) {
		o.Std = [3]float64{0.229, 0.224, 0.225}
	}
	if o.Registers < 0 || o.Patches < -1 {
		return nil, fmt.Errorf("feature model %s: registers must be >= 0 and patches >= -1 (got %d and %d)", path, o.Registers, o.Patches)
	}
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, fmt.Errorf("feature model: %w", err)
	}
	v := &ViT{sess: sess, o: o, size: o.Size}
	if err := v.bind(); err != nil {
		sess.Close()
		return nil, fmt.Errorf("feature model %s: %w", path, err)
	}
	v.name = fmt.Sprintf("vit:model=%s,size=%d,registers=%d,patches=%d", filepath.Base(path), v.size, o.Registers, o.Patches)
	return v, nil
}

func (v *ViT) bind() error {
	in, err := v.sess.RequireInput(v.o.Input)
	if err != nil {
		return err
	}
	out, err := v.sess.RequireOutput(v.o.Output)
	if err != nil {
		return err
	}
	if len(in.Dims) != 4 || !in.Type.IsFloat() || (in.Dims[1] >= 0 && in.Dims[1] != 3) {
		return fmt.Errorf("input %s must be float [batch, 3, size, size] (DINOv2's pixel_values)", in)
	}
	if len(out.Dims) != 3 || !out.Type.IsFloat() {
		return fmt.Errorf("output %s must be float [batch, tokens, dim] (DINOv2's last_hidden_state)", out)
	}
	if in.Dims[2] > 0 {
		v.size = int(in.Dims[2])
	}
	if v.size == 0 {
		v.size = 224
	}
	return nil
}

// Name is "vit:" and the settings that shape the features (model file, input size, registers,
// patches kept), which a resumed export compares.
func (v *ViT) Name() string { return v.name }

// Extract runs the backbone on imgs in one batch.
func (v *ViT) Extract(ctx context.Context, imgs pixels.Images) (*Features, error) {
	if err := imgs.Validate(); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := int64(v.size)
	call, err := v.sess.NewCall(models.Shapes{v.o.Input: {int64(imgs.N), 3, s, s}})
	if err != nil {
		return nil, fmt.Errorf("feature model: %w", err)
	}
	defer call.Close()
	in, err := call.Float32(v.o.Input)
	if err != nil {
		return nil, err
	}
	plane, out := imgs.H*imgs.W, v.size*v.size
	for i := range imgs.N {
		img := imgs.At(i)
		for c := range 3 {
			src := img[min(c, imgs.C-1)*plane : (min(c, imgs.C-1)+1)*plane]
			dst := in[(i*3+c)*out : (i*3+c+1)*out]
			pixels.ResizePlane(dst, v.size, v.size, src, imgs.H, imgs.W)
			for j, x := range dst {
				dst[j] = float32((float64(x) - v.o.Mean[c]) / v.o.Std[c])
			}
		}
	}
	if err := call.Run(ctx); err != nil {
		return nil, fmt.Errorf("feature model: %w", err)
	}
	hidden, shape, err := call.Output(v.o.Output)
	if err != nil {
		return nil, err
	}
	tokens, dim := int(shape[1]), int(shape[2])
	patches := tokens - 1 - v.o.Registers
	if patches < 0 {
		return nil, fmt.Errorf("feature model returned %d tokens, fewer than CLS and %d registers", tokens, v.o.Registers)
	}
	keep := patchPositions(patches, v.o.Patches)
	f := &Features{N: imgs.N, Dim: dim, CLS: make([]float32, imgs.N*dim), Patches: len(keep)}
	f.PatchTokens = make([]float32, imgs.N*len(keep)*dim)
	for i := range imgs.N {
		row := hidden[i*tokens*dim : (i+1)*tokens*dim]
		copy(f.CLS[i*dim:], row[:dim])
		for j, p := range keep {
			t := 1 + v.o.Registers + p
			copy(f.PatchTokens[(i*len(keep)+j)*dim:], row[t*dim:(t+1)*dim])
		}
	}
	return f, nil
}

// patchPositions picks which of p patch tokens to keep: none (n = 0), all (n < 0 or n >= p), or
// n evenly spaced.
func patchPositions(p, n int) []int {
	if n == 0 {
		return nil
	}
	if n < 0 || n >= p {
		n = p
	}
	out := make([]int, n)
	for i := range out {
		out[i] = i * p / n
	}
	return out
}

// Close releases the model.
func (v *ViT) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.sess.Close()
}
