package rewards

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

func init() {
	Register("dino", newDINO, append([]string{"model", "ref", "input", "output", "reduce", "registers", "patch"}, imageOptionKeys...)...)
}

// DINO rewards images that look like reference images (the image-as-reward idea of Adv-GRPO):
// the cosine similarity between the class-token embedding of the image and of each reference,
// as a self-supervised vision backbone (DINOv2) sees them, optionally mixed with the mean
// similarity of the patch tokens at the same positions:
//
//	s(image, ref) = (1 - PatchWeight) cos(cls, cls_ref) + PatchWeight mean_j cos(patch_j, patch_ref_j)
//	score = max over refs of s (or the mean, with Reduce "mean")
//
// The backbone is an ONNX export of the DINOv2 kind: pixel_values [batch, 3, H, W] ->
// last_hidden_state [batch, tokens, dim], tokens being the class token, then any register
// tokens, then the patches in row-major order. The references are embedded once, when the
// reward is built, and kept.
type DINO struct {
	model  *visionModel
	output string
	o      DINOOptions

	// registers is the number of register tokens; patches the number of patch tokens; dim the
	// embedding width. All are known after the references ran, and never change after: Score
	// only reads them, so concurrent Scores need no lock.
	registers, patches, dim int
	// refCLS[r] is reference r's unit class-token embedding; refPatch[r] its unit patch
	// embeddings (only kept when PatchWeight > 0).
	refCLS, refPatch [][]float64
}

// DINOOptions configure [NewDINO].
type DINOOptions struct {
	// Input and Output name the image input and the token output (default: pixel_values or
	// the only image input, and last_hidden_state).
	Input, Output string
	// Image is the preprocessing. Zero Mean/Std mean ImageNet's, zero Height/Width (for a model
	// with a dynamic size) 224, and zero Resize the DINOv2 processor's 256/224 of the size.
	Image ImageOptions
	// Registers is the number of register tokens after the class token; -1 infers it from the
	// token count and the input size (the smallest count that leaves a whole grid of patches).
	Registers int
	// Reduce combines the similarities to several references: "max" (default) or "mean".
	Reduce string
	// PatchWeight in [0, 1] mixes in the mean patch-token similarity (0: class token only).
	PatchWeight float64
}

func newDINO(o *Options, env Env) (Reward, error) {
	path := o.String("model", "")
	if path == "" {
		return nil, fmt.Errorf("reward dino: option model=PATH (an ONNX DINOv2-style backbone) is required")
	}
	refPaths := o.Strings("ref")
	if len(refPaths) == 0 {
		return nil, fmt.Errorf("reward dino: option ref=PATH (a reference image, or a folder of them; repeat ref= for more) is required")
	}
	img, err := parseImageOptions(o, ImageOptions{Antialias: true})
	if err != nil {
		return nil, err
	}
	do := DINOOptions{Input: o.String("input", ""), Output: o.String("output", ""), Image: img, Reduce: o.String("reduce", "max")}
	if do.Registers, err = o.Int("registers", -1); err != nil {
		return nil, err
	}
	if do.PatchWeight, err = o.Float("patch", 0); err != nil {
		return nil, err
	}
	refs, err := loadReferences(refPaths)
	if err != nil {
		return nil, fmt.Errorf("reward dino: %w", err)
	}
	return NewDINO(path, refs, do, env.ModelOptions...)
}

// loadReferences reads reference images: files, or every PNG, JPEG and WebP file in a folder.
func loadReferences(paths []string) ([]pixels.Images, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("reference image: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("reference images: %w", err)
		}
		n := len(files)
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".png", ".jpg", ".jpeg", ".webp":
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
		if len(files) == n {
			return nil, fmt.Errorf("reference folder %s holds no PNG, JPEG or WebP image", p)
		}
	}
	refs := make([]pixels.Images, len(files))
	for i, f := range files {
		var err error
		if refs[i], err = LoadImage(f); err != nil {
			return nil, err
		}
	}
	return refs, nil
}

// NewDINO loads the backbone at path and embeds the reference images (each batch may have its
// own size; every image of every batch is a reference).
func NewDINO(path string, refs []pixels.Images, o DINOOptions, opts ...models.Option) (*DINO, error) {
	if o.Reduce == "" {
		o.Reduce = "max"
	}
	if o.Reduce != "max" && o.Reduce != "mean" {
		return nil, fmt.Errorf("reward dino: reduce=%q is not max or mean", o.Reduce)
	}
	if o.PatchWeight < 0 || o.PatchWeight > 1 || math.IsNaN(o.PatchWeight) {
		return nil, fmt.Errorf("reward dino: patch=%g must be in [0, 1]", o.PatchWeight)
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("reward dino: no reference images")
	}
	img := o.Image
	if len(img.Mean) == 0 && len(img.Std) == 0 {
		img.Mean, img.Std = ImageNetMean, ImageNetStd
	}
	m, err := openVision(path, o.Input, img, 224, opts)
	if err != nil {
		return nil, fmt.Errorf("reward dino: %w", err)
	}
	r := &DINO{model: m, o: o}
	if err := r.init(refs); err != nil {
		m.close()
		return nil, fmt.Errorf("reward dino: %w", err)
	}
	return r, nil
}

// init binds the output, settles the resize, and embeds the references in one batch.
func (r *DINO) init(refs []pixels.Images) error {
	name := r.o.Output
	if name == "" {
		name = "last_hidden_state"
	}
	out, err := r.model.output(name, "output", nil)
	if err != nil {
		return err
	}
	if len(out.Dims) != 3 || !out.Type.IsFloat() {
		return fmt.Errorf("output %s must be float [batch, tokens, dim]", out)
	}
	r.output = out.Name
	p := r.model.prep
	if r.o.Image.Resize == 0 {
		// DINOv2's processor: shorter side to 256, centre crop 224; the same ratio at other sizes.
		p.opts.Resize = (max(p.h, p.w)*256 + 223) / 224
	}
	type ref struct {
		img     []float32
		c, h, w int
	}
	var all []ref
	for _, b := range refs {
		if err := b.Validate(); err != nil {
			return fmt.Errorf("reference image: %w", err)
		}
		for i := range b.N {
			all = append(all, ref{b.At(i), b.C, b.H, b.W})
		}
	}
	tokens := [][]float64{}
	err = r.model.run(context.Background(), len(all), func(in []float32, lo, k int) {
		size := p.size()
		for i := range k {
			a := all[lo+i]
			p.fillOne(in[i*size:(i+1)*size], a.img, a.c, a.h, a.w)
		}
	}, func(call *models.Call, lo, k int) error {
		h, shape, err := call.Output(r.output)
		if err != nil {
			return err
		}
		if err := r.layout(shape); err != nil {
			return err
		}
		for i := range k {
			tokens = append(tokens, unitRows(nil, h, i, int(shape[1]), r.dim, 0))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range tokens {
		r.refCLS = append(r.refCLS, t[:r.dim])
		if r.o.PatchWeight > 0 {
			r.refPatch = append(r.refPatch, t[(1+r.registers)*r.dim:])
		}
	}
	return nil
}

// layout learns (or checks) the token layout from an output shape [batch, tokens, dim].
func (r *DINO) layout(shape []int64) error {
	if len(shape) != 3 {
		return fmt.Errorf("output %s has shape %v, want [batch, tokens, dim]", r.output, shape)
	}
	tokens, dim := int(shape[1]), int(shape[2])
	if r.dim != 0 {
		if dim != r.dim || tokens != 1+r.registers+r.patches {
			return fmt.Errorf("output %s changed shape to %v", r.output, shape)
		}
		return nil
	}
	h, w := r.model.prep.h, r.model.prep.w
	regs := r.o.Registers
	if regs < 0 {
		regs = inferRegisters(tokens, h, w)
		if regs < 0 {
			return fmt.Errorf("output %s has %d tokens, which no patch grid of a %dx%d input explains; give registers=N", r.output, tokens, h, w)
		}
	}
	if tokens < 2+regs {
		return fmt.Errorf("output %s has %d tokens; with %d registers there are no patch tokens", r.output, tokens, regs)
	}
	r.registers, r.patches, r.dim = regs, tokens-1-regs, dim
	return nil
}

// inferRegisters returns the smallest register count that leaves the patch tokens of an h x w
// input cut into square patches, or -1.
func inferRegisters(tokens, h, w int) int {
	for regs := 0; regs <= 16 && regs < tokens-1; regs++ {
		n := tokens - 1 - regs
		for p := 1; p <= min(h, w); p++ {
			if h%p == 0 && w%p == 0 && (h/p)*(w/p) == n {
				return regs
			}
		}
	}
	return -1
}

// unitRows returns the first count tokens of image i (of a batch output with tokens x dim values per
// image) in float64, each scaled to unit length (a zero token stays zero), in buf when it is
// large enough. count == 0 means all tokens.
func unitRows(buf []float64, h []float32, i, tokens, dim, count int) []float64 {
	if count == 0 {
		count = tokens
	}
	out := buf[:0]
	if cap(out) < count*dim {
		out = make([]float64, count*dim)
	}
	out = out[:count*dim]
	base := i * tokens * dim
	for t := range count {
		row := out[t*dim : (t+1)*dim]
		var ss float64
		for j := range row {
			row[j] = float64(h[base+t*dim+j])
			ss += row[j] * row[j]
		}
		if ss > 0 {
			inv := 1 / math.Sqrt(ss)
			for j := range row {
				row[j] *= inv
			}
		}
	}
	return out
}

// Name is "dino".
func (r *DINO) Name() string { return "dino" }

// Score embeds all images in one batch and compares them with the cached references.
func (r *DINO) Score(ctx context.Context, imgs pixels.Images, _ string, dst []float64) error {
	if err := checkBatch(imgs, dst); err != nil {
		return err
	}
	var buf []float64 // one image's unit tokens
	err := r.model.runImages(ctx, imgs, func(call *models.Call, lo, k int) error {
		h, shape, err := call.Output(r.output)
		if err != nil {
			return err
		}
		if err := r.layout(shape); err != nil {
			return err
		}
		need := 1 // the class token, unless patches are compared too
		if r.o.PatchWeight > 0 {
			need = int(shape[1])
		}
		for i := range k {
			buf = unitRows(buf, h, i, int(shape[1]), r.dim, need)
			dst[lo+i] = r.similarity(buf)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reward dino: %w", err)
	}
	return nil
}

// similarity scores one image's unit tokens against every reference.
func (r *DINO) similarity(tokens []float64) float64 {
	cls := tokens[:r.dim]
	w := r.o.PatchWeight
	var patches []float64
	if w > 0 {
		patches = tokens[(1+r.registers)*r.dim:]
	}
	var best, sum float64 = math.Inf(-1), 0
	for j, ref := range r.refCLS {
		s := (1 - w) * dot64(cls, ref)
		if w > 0 {
			var ps float64
			for p := range r.patches {
				ps += dot64(patches[p*r.dim:(p+1)*r.dim], r.refPatch[j][p*r.dim:(p+1)*r.dim])
			}
			s += w * ps / float64(r.patches)
		}
		best = max(best, s)
		sum += s
	}
	if r.o.Reduce == "mean" {
		return sum / float64(len(r.refCLS))
	}
	return best
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// References returns the unit class-token embedding of every reference image, as cached.
func (r *DINO) References() [][]float64 {
	out := make([][]float64, len(r.refCLS))
	for i, c := range r.refCLS {
		out[i] = slices.Clone(c)
	}
	return out
}

// Close releases the backbone's session. It must not run while a Score does.
func (r *DINO) Close() error {
	return r.model.close()
}
