package rewards

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

func init() {
	Register("aesthetic", newAesthetic, append([]string{"encoder", "head", "input", "embedding", "head-input", "head-output", "normalize"}, imageOptionKeys...)...)
}

// DefaultAestheticHead is the LAION aesthetic predictor's file under the model folder, where
// `fksteer models pull laion-aesthetic-vitb32` puts it.
const DefaultAestheticHead = "laion-aesthetic-vitb32/laion_aesthetic.onnx"

// Aesthetic is a two-stage reward: an image-embedding model (a CLIP image encoder exported
// with image_embeds) followed by a head that maps the embedding to a score, such as the LAION
// aesthetic predictor (a linear head on L2-normalised CLIP ViT-B/32 embeddings, scores roughly
// 1 to 10). All images go through the encoder in one batch; the head runs in batches as large
// as it accepts (the LAION export takes one embedding at a time).
type Aesthetic struct {
	encoder   *visionModel
	embedding string
	head      *models.Session
	headIn    models.TensorInfo
	headOut   string
	normalize bool
	calls     *sessionCalls // the head's
}

// AestheticOptions configure [NewAesthetic].
type AestheticOptions struct {
	// Input and Embedding name the encoder's image input and embedding output (default: the
	// only image input; image_embeds, or the only output).
	Input, Embedding string
	// HeadInput and HeadOutput name the head's tensors (default: its only ones).
	HeadInput, HeadOutput string
	// Normalize divides each embedding by its length before the head, as the LAION predictor
	// expects.
	Normalize bool
	// Preprocess is the encoder's preprocessing; zero Mean/Std mean CLIP's, zero size 224 and
	// zero Resize the model's size (CLIP's shorter-side resize and centre crop); antialiased.
	Preprocess ImageOptions
}

func newAesthetic(o *Options, env Env) (Reward, error) {
	encoder := o.String("encoder", "")
	if encoder == "" {
		return nil, fmt.Errorf("reward aesthetic: option encoder=PATH (an ONNX CLIP image encoder with image_embeds) is required")
	}
	head, err := env.modelFile(o, "head", DefaultAestheticHead)
	if err != nil {
		return nil, err
	}
	ao := AestheticOptions{Input: o.String("input", ""), Embedding: o.String("embedding", ""),
		HeadInput: o.String("head-input", ""), HeadOutput: o.String("head-output", "")}
	if ao.Normalize, err = o.Bool("normalize", true); err != nil {
		return nil, err
	}
	if ao.Preprocess, err = parseImageOptions(o, ImageOptions{Antialias: true}); err != nil {
		return nil, err
	}
	return NewAesthetic(encoder, head, ao, env.ModelOptions...)
}

// NewAesthetic loads the encoder and the head.
func NewAesthetic(encoder, head string, o AestheticOptions, opts ...models.Option) (*Aesthetic, error) {
	img := o.Preprocess
	if len(img.Mean) == 0 && len(img.Std) == 0 {
		img.Mean, img.Std = CLIPMean, CLIPStd
	}
	enc, err := openVision(encoder, o.Input, img, 224, opts)
	if err != nil {
		return nil, fmt.Errorf("reward aesthetic: encoder %w", err)
	}
	if o.Preprocess.Resize == 0 {
		enc.prep.opts.Resize = max(enc.prep.h, enc.prep.w)
	}
	r := &Aesthetic{encoder: enc, normalize: o.Normalize}
	if err := r.bind(head, o, opts); err != nil {
		return nil, errors.Join(fmt.Errorf("reward aesthetic: %w", err), r.Close())
	}
	return r, nil
}

func (r *Aesthetic) bind(head string, o AestheticOptions, opts []models.Option) error {
	name := o.Embedding
	if name == "" {
		if _, ok := r.encoder.sess.Output("image_embeds"); ok {
			name = "image_embeds"
		}
	}
	emb, err := r.encoder.output(name, "embedding", func(models.TensorInfo) bool { return true })
	if err != nil {
		return err
	}
	if len(emb.Dims) != 2 || !emb.Type.IsFloat() {
		return fmt.Errorf("encoder output %s must be float [batch, dim]", emb)
	}
	r.embedding = emb.Name
	if r.head, err = models.Open(head, opts...); err != nil {
		return fmt.Errorf("head: %w", err)
	}
	r.calls = newSessionCalls(r.head)
	anyTensor := func(models.TensorInfo) bool { return true }
	if r.headIn, err = pickTensor(r.head.Inputs, o.HeadInput, "input", "head-input", anyTensor); err != nil {
		return fmt.Errorf("head %s: %w", head, err)
	}
	out, err := pickTensor(r.head.Outputs, o.HeadOutput, "output", "head-output", anyTensor)
	if err != nil {
		return fmt.Errorf("head %s: %w", head, err)
	}
	r.headOut = out.Name
	if len(r.headIn.Dims) != 2 || !r.headIn.Type.IsFloat() {
		return fmt.Errorf("head input %s must be float [batch, dim]", r.headIn)
	}
	if d, h := emb.Dims[1], r.headIn.Dims[1]; d > 0 && h > 0 && d != h {
		return fmt.Errorf("the encoder's %s has %d values, the head's %s takes %d: they are not a pair", emb, d, r.headIn, h)
	}
	return nil
}

// Name is "aesthetic".
func (r *Aesthetic) Name() string { return "aesthetic" }

// Score embeds all images in one encoder batch and scores the embeddings with the head.
func (r *Aesthetic) Score(ctx context.Context, imgs pixels.Images, _ string, dst []float64) error {
	if err := checkBatch(imgs, dst); err != nil {
		return err
	}
	emb, dim, err := r.embed(ctx, imgs)
	if err != nil {
		return fmt.Errorf("reward aesthetic: encoder: %w", err)
	}
	if err := r.scoreEmbeddings(ctx, emb, dim, dst); err != nil {
		return fmt.Errorf("reward aesthetic: head: %w", err)
	}
	return nil
}

// embed returns the (normalised) embeddings of imgs, imgs.N rows of dim values.
func (r *Aesthetic) embed(ctx context.Context, imgs pixels.Images) (emb []float32, dim int, err error) {
	err = r.encoder.runImages(ctx, imgs, func(call *models.Call, lo, k int) error {
		out, shape, err := call.Output(r.embedding)
		if err != nil {
			return err
		}
		if len(shape) != 2 || shape[0] != int64(k) {
			return fmt.Errorf("output %s has shape %v for %d images", r.embedding, shape, k)
		}
		dim = int(shape[1])
		emb = grow(emb, imgs.N*dim)
		copy(emb[lo*dim:], out)
		if r.normalize {
			for i := lo; i < lo+k; i++ {
				row := emb[i*dim : (i+1)*dim]
				var ss float64
				for _, v := range row {
					ss += float64(v) * float64(v)
				}
				inv := 1 / math.Sqrt(ss) // a zero embedding becomes NaN: the image gets no score
				for j, v := range row {
					row[j] = float32(float64(v) * inv)
				}
			}
		}
		return nil
	})
	return emb, dim, err
}

// scoreEmbeddings runs the head on the embeddings emb (rows of dim values), one score each.
func (r *Aesthetic) scoreEmbeddings(ctx context.Context, emb []float32, dim int, dst []float64) error {
	n := len(dst)
	step := batchLimit(r.headIn, n)
	for lo := 0; lo < n; lo += step {
		k := min(step, n-lo)
		err := r.calls.with(models.Shapes{r.headIn.Name: {int64(k), int64(dim)}}, func(call *models.Call) error {
			in, err := call.Float32(r.headIn.Name)
			if err != nil {
				return err
			}
			copy(in, emb[lo*dim:(lo+k)*dim])
			if err := call.Run(ctx); err != nil {
				return err
			}
			out, shape, err := call.Output(r.headOut)
			if err != nil {
				return err
			}
			if len(out) != k {
				return fmt.Errorf("output %s has shape %v for %d embeddings; want one score each", r.headOut, shape, k)
			}
			for i, v := range out {
				dst[lo+i] = float64(v)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Close releases both sessions. It must not run while a Score does.
func (r *Aesthetic) Close() error {
	var errs []error
	if r.calls != nil {
		errs = append(errs, r.calls.close())
	} else if r.head != nil {
		errs = append(errs, r.head.Close())
	}
	return errors.Join(append(errs, r.encoder.close())...)
}
