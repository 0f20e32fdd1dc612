package rewards

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/tokenizers"
)

func init() {
	Register("preference", newPreference, append([]string{"model", "preset", "image", "text", "mask", "output", "image-embeds", "text-embeds", "score", "logit-scale", "shift", "scale", "tokenizer", "text-length"}, imageOptionKeys...)...)
}

// Preference scores how well images match their prompt with an image-text model exported to
// ONNX: CLIP score, PickScore, HPSv2 (CLIP-shaped: pixel_values and input_ids in, embeddings
// or logits out) or ImageReward (BLIP-shaped: pixel_values, input_ids and attention_mask in, a
// [batch, 1] score out). The raw score is either a model output read per image (mode "logits":
// logits_per_image's diagonal, or a [batch] / [batch, 1] score) or LogitScale times the cosine
// similarity of the image and text embeddings (mode "cosine"); the reward is the affine
// normalisation (raw - Shift) / Scale, e.g. ImageReward's (r - 0.1672) / 1.0333.
//
// Prompts are tokenized with the model's own tokenizer (CLIP's BPE or BERT's WordPiece) and
// padded to its length; an attention_mask input, if the model has one, gets 1 up to the
// end token (EOS or [SEP]) and 0 after it.
type Preference struct {
	sess       *models.Session
	image      models.TensorInfo
	text, mask string
	textLen    int
	mode       string
	output     string // logits mode
	imgOut     string // cosine mode
	txtOut     string
	o          PreferenceOptions
	prep       *imagePrep
	calls      *sessionCalls
}

// PreferenceOptions configure [NewPreference].
type PreferenceOptions struct {
	// ImageInput, TextInput and MaskInput name the model's inputs. Empty ImageInput means the
	// only float image input; empty TextInput the only integer input other than the mask
	// (if any); TextInput "none" says the model reads no text. Empty MaskInput means
	// "attention_mask" if the model has it.
	ImageInput, TextInput, MaskInput string
	// Mode is "logits" (read Output) or "cosine" (compare ImageEmbeds with TextEmbeds); empty
	// means logits when the model has Output (default logits_per_image) or a single output,
	// cosine when it has image_embeds and text_embeds instead.
	Mode                            string
	Output, ImageEmbeds, TextEmbeds string
	// LogitScale multiplies the cosine similarity (PickScore's and CLIP's exp(logit_scale),
	// 100); 0 means 1.
	LogitScale float64
	// Shift and Scale normalise: reward = (raw - Shift) / Scale; Scale 0 means 1.
	Shift, Scale float64
	// Tokenizer encodes prompts for the text input, at the length the model reads: a
	// *clip.Tokenizer, or a *bert.Tokenizer for BLIP's text encoder (ImageReward: 35 ids).
	Tokenizer tokenizers.Tokenizer
	// Preprocess is the image preprocessing; zero Mean/Std mean CLIP's, zero Height/Width
	// (for dynamic sizes) 224, zero Resize the model's size (CLIP's shorter-side resize and
	// centre crop), and it antialiases.
	Preprocess ImageOptions
}

// preferencePreset is a preset= value: the scoring, normalisation, preprocessing and text
// encoding of a known scorer, which the spec's own options override.
type preferencePreset struct {
	opts PreferenceOptions
	// tokenizer is the kind of tokenizer the scorer was trained with; "" accepts either.
	tokenizer tokenizers.Kind
	// textLength is the number of ids the text tower reads; 0 keeps the tokenizer's.
	textLength int
}

// ImageRewardTextLength is the number of bert-base-uncased ids ImageReward's text encoder reads:
// its tokenizer pads and truncates every prompt to 35 ([CLS] and [SEP] included).
const ImageRewardTextLength = 35

// preferencePresets are the preset= values.
var preferencePresets = map[string]preferencePreset{
	// ImageReward (Xu et al. 2023), as its ImageReward.score: BERT WordPiece ids padded to 35
	// with a mask; the image's shorter side resized to 224 with PIL's bicubic filter, centre
	// crop 224 (the model's size), CLIP's mean and std (the defaults); then ImageReward's own
	// normalisation (r - mean) / std.
	"imagereward": {
		opts: PreferenceOptions{Mode: "logits", Shift: 0.16717362830052426, Scale: 1.0333394966054072,
			Preprocess: ImageOptions{Antialias: true, Bicubic: true}},
		tokenizer:  tokenizers.WordPiece,
		textLength: ImageRewardTextLength,
	},
	"pickscore": {opts: PreferenceOptions{Mode: "cosine", LogitScale: 100}},
	"hpsv2":     {opts: PreferenceOptions{Mode: "cosine", LogitScale: 1}},
	"clipscore": {opts: PreferenceOptions{Mode: "cosine", LogitScale: 100}},
}

func newPreference(o *Options, env Env) (Reward, error) {
	path := o.String("model", "")
	if path == "" {
		return nil, fmt.Errorf("reward preference: option model=PATH (an ONNX image-text scorer) is required")
	}
	preset := preferencePreset{opts: PreferenceOptions{Preprocess: ImageOptions{Antialias: true}}}
	name := o.String("preset", "")
	if name != "" {
		p, ok := preferencePresets[name]
		if !ok {
			return nil, fmt.Errorf("reward preference: preset=%q is not one of %s", name, presetNames())
		}
		preset = p
	}
	po := preset.opts
	var err error
	if po.Preprocess, err = parseImageOptions(o, po.Preprocess); err != nil {
		return nil, err
	}
	po.ImageInput, po.TextInput, po.MaskInput = o.String("image", ""), o.String("text", ""), o.String("mask", "")
	po.Output, po.ImageEmbeds, po.TextEmbeds = o.String("output", ""), o.String("image-embeds", ""), o.String("text-embeds", "")
	po.Mode = o.String("score", po.Mode)
	if po.LogitScale, err = o.Float("logit-scale", po.LogitScale); err != nil {
		return nil, err
	}
	if po.Shift, err = o.Float("shift", po.Shift); err != nil {
		return nil, err
	}
	if po.Scale, err = o.Float("scale", po.Scale); err != nil {
		return nil, err
	}
	dir := o.String("tokenizer", "")
	textLen, err := o.Int("text-length", preset.textLength)
	if err != nil {
		return nil, err
	}
	if textLen < 0 || textLen == 1 {
		return nil, fmt.Errorf("reward preference: text-length=%d: want at least 2 (0 = the tokenizer's own)", textLen)
	}
	if po.TextInput != "none" {
		if dir == "" {
			if dir, err = tokenizerBeside(path); err != nil {
				return nil, fmt.Errorf("reward preference: %w", err)
			}
		}
		if dir != "" {
			tok, kind, err := tokenizers.Load(dir, textLen)
			if err != nil {
				return nil, fmt.Errorf("reward preference: %w", err)
			}
			if preset.tokenizer != "" && kind != preset.tokenizer {
				return nil, fmt.Errorf("reward preference: preset=%s reads %s ids, but %s holds a %s tokenizer (ImageReward's is bert-base-uncased's vocab.txt)", name, preset.tokenizer, dir, kind)
			}
			po.Tokenizer = tok
		}
	}
	return NewPreference(path, po, env.ModelOptions...)
}

// tokenizerBeside finds the tokenizer that came with a model when the spec names none: the
// folder tokenizer/ next to the model file (as in a diffusers-style export, and the layout
// docs/rewards.md gives for ImageReward), else the model's own folder if it holds tokenizer
// files (as optimum's exports do). It returns "" when neither does. A tokenizer/ folder that
// is there but unreadable is an error, not a reason to look elsewhere.
func tokenizerBeside(model string) (string, error) {
	dir := filepath.Dir(model)
	sub := filepath.Join(dir, "tokenizer")
	if fi, err := os.Stat(sub); err == nil && fi.IsDir() {
		return sub, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if _, err := tokenizers.Detect(dir); err == nil {
		return dir, nil
	}
	return "", nil
}

// NewPreference loads the scorer at path.
func NewPreference(path string, o PreferenceOptions, opts ...models.Option) (*Preference, error) {
	if o.Scale == 0 {
		o.Scale = 1
	}
	if o.LogitScale == 0 {
		o.LogitScale = 1
	}
	if bad := math.IsNaN(o.Shift) || math.IsInf(o.Shift, 0) || math.IsNaN(o.Scale) || math.IsInf(o.Scale, 0) || math.IsNaN(o.LogitScale) || math.IsInf(o.LogitScale, 0); bad {
		return nil, fmt.Errorf("reward preference: shift, scale and logit-scale must be finite")
	}
	img := o.Preprocess
	if len(img.Mean) == 0 && len(img.Std) == 0 {
		img.Mean, img.Std = CLIPMean, CLIPStd
	}
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, fmt.Errorf("reward preference: %w", err)
	}
	r := &Preference{sess: sess, o: o, calls: newSessionCalls(sess)}
	if err := r.bind(img); err != nil {
		sess.Close()
		return nil, fmt.Errorf("reward preference %s: %w", path, err)
	}
	return r, nil
}

// bind resolves the inputs, the outputs and the scoring mode.
func (r *Preference) bind(img ImageOptions) error {
	o := r.o
	var err error
	if r.image, err = pickTensor(r.sess.Inputs, o.ImageInput, "input", "image", func(t models.TensorInfo) bool {
		return len(t.Dims) == 4 && t.Type.IsFloat()
	}); err != nil {
		return err
	}
	if r.prep, err = newImagePrep(r.image, withDefaultSize(r.image, img, 224)); err != nil {
		return err
	}
	if img.Resize == 0 {
		r.prep.opts.Resize = max(r.prep.h, r.prep.w)
	}
	mask := o.MaskInput
	if mask == "" {
		if _, ok := r.sess.Input("attention_mask"); ok {
			mask = "attention_mask"
		}
	}
	if mask != "" {
		if _, err := r.sess.RequireInput(mask); err != nil {
			return err
		}
		r.mask = mask
	}
	if o.TextInput != "none" {
		t, err := pickTensor(r.sess.Inputs, o.TextInput, "input", "text", func(t models.TensorInfo) bool {
			return !t.Type.IsFloat() && t.Name != r.mask
		})
		if err != nil {
			return fmt.Errorf("%w (or text=none for a model that reads no prompt)", err)
		}
		if len(t.Dims) != 2 {
			return fmt.Errorf("text input %s must be [batch, tokens]", t)
		}
		if o.Tokenizer == nil {
			return fmt.Errorf("the model reads text (%s) but has no tokenizer: give its tokenizer folder with tokenizer=DIR (vocab.json and merges.txt for CLIP, vocab.txt for BERT), or put it in tokenizer/ beside the model", t)
		}
		r.text, r.textLen = t.Name, o.Tokenizer.MaxLength()
		if t.Dims[1] > 0 && int(t.Dims[1]) != r.textLen {
			return fmt.Errorf("text input %s takes %d tokens, the tokenizer makes %d (set text-length=%d)", t, t.Dims[1], r.textLen, t.Dims[1])
		}
	}
	for _, in := range r.sess.Inputs {
		if in.Name != r.image.Name && in.Name != r.text && in.Name != r.mask {
			return fmt.Errorf("input %s is neither the image, the text nor the attention mask; name them with image=, text=, mask=", in)
		}
	}
	return r.bindOutputs()
}

func (r *Preference) bindOutputs() error {
	o := r.o
	r.mode = o.Mode
	logits := o.Output
	if logits == "" {
		if _, ok := r.sess.Output("logits_per_image"); ok {
			logits = "logits_per_image"
		} else if len(r.sess.Outputs) == 1 {
			logits = r.sess.Outputs[0].Name
		}
	}
	imgOut, txtOut := cmpOr(o.ImageEmbeds, "image_embeds"), cmpOr(o.TextEmbeds, "text_embeds")
	_, hasImg := r.sess.Output(imgOut)
	_, hasTxt := r.sess.Output(txtOut)
	if r.mode == "" {
		r.mode = "logits"
		if logits == "" && hasImg && hasTxt {
			r.mode = "cosine"
		}
	}
	switch r.mode {
	case "logits":
		if logits == "" {
			return fmt.Errorf("the model has several outputs and none is logits_per_image; name the score with output=")
		}
		if _, err := r.sess.RequireOutput(logits); err != nil {
			return err
		}
		r.output = logits
	case "cosine":
		if r.text == "" {
			return fmt.Errorf("score=cosine compares text and image embeddings, but the model reads no text")
		}
		if _, err := r.sess.RequireOutput(imgOut); err != nil {
			return fmt.Errorf("%w (name the embeddings with image-embeds= and text-embeds=)", err)
		}
		if _, err := r.sess.RequireOutput(txtOut); err != nil {
			return fmt.Errorf("%w (name the embeddings with image-embeds= and text-embeds=)", err)
		}
		r.imgOut, r.txtOut = imgOut, txtOut
	default:
		return fmt.Errorf("score=%q is not logits or cosine", r.mode)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Name is "preference".
func (r *Preference) Name() string { return "preference" }

// Score runs all images, each paired with the prompt, through the scorer in one batch.
func (r *Preference) Score(ctx context.Context, imgs pixels.Images, prompt string, dst []float64) error {
	if err := checkBatch(imgs, dst); err != nil {
		return err
	}
	var ids, mask []int64
	if r.text != "" {
		ids, mask = r.tokenize(prompt)
	}
	step := batchLimit(r.image, imgs.N)
	for lo := 0; lo < imgs.N; lo += step {
		k := min(step, imgs.N-lo)
		sub := pixels.Images{N: k, C: imgs.C, H: imgs.H, W: imgs.W, Pix: imgs.Pix[lo*imgs.Len() : (lo+k)*imgs.Len()]}
		if err := r.run(ctx, sub, ids, mask, dst[lo:lo+k]); err != nil {
			return fmt.Errorf("reward preference: %w", err)
		}
	}
	return nil
}

// run scores one model batch of images, each paired with the prompt's token ids and mask (one
// padded row each; nil for a model that reads no text).
func (r *Preference) run(ctx context.Context, imgs pixels.Images, ids, mask []int64, dst []float64) error {
	n := imgs.N
	shapes := models.Shapes{r.image.Name: r.prep.shape(n)}
	if r.text != "" {
		shapes[r.text] = []int64{int64(n), int64(r.textLen)}
	}
	if r.mask != "" {
		shapes[r.mask] = []int64{int64(n), int64(r.textLen)}
	}
	return r.calls.with(shapes, func(call *models.Call) error {
		px, err := call.Float32(r.image.Name)
		if err != nil {
			return err
		}
		r.prep.fill(px, imgs)
		if r.text != "" {
			if err := fillRows(call, r.text, ids, n); err != nil {
				return err
			}
			if r.mask != "" {
				if err := fillRows(call, r.mask, mask, n); err != nil {
					return err
				}
			}
		}
		return r.scoreOutputs(ctx, call, n, dst)
	})
}

// scoreOutputs runs a filled call on n images and writes their normalised scores.
func (r *Preference) scoreOutputs(ctx context.Context, call *models.Call, n int, dst []float64) error {
	if err := call.Run(ctx); err != nil {
		return err
	}
	if r.mode == "cosine" {
		return r.cosine(call, n, dst)
	}
	out, shape, err := call.Output(r.output)
	if err != nil {
		return err
	}
	switch {
	case len(out) == n: // [batch] or [batch, 1]
		for i := range n {
			dst[i] = r.normalise(float64(out[i]))
		}
	case len(shape) == 2 && shape[0] == int64(n) && shape[1] == int64(n): // [images, texts]
		for i := range n {
			dst[i] = r.normalise(float64(out[i*n+i]))
		}
	default:
		return fmt.Errorf("output %s has shape %v for %d images; want [batch], [batch, 1] or [batch, batch]", r.output, shape, n)
	}
	return nil
}

// tokenize encodes prompt into one padded row of token ids and its attention mask: 1 up to the
// end token, 0 after. A Score call tokenizes once, which costs nothing beside the model's Run.
func (r *Preference) tokenize(prompt string) (ids, mask []int64) {
	tokens, _ := r.o.Tokenizer.EncodePadded(prompt)
	used := len(r.o.Tokenizer.Encode(prompt)) // BOS, the prompt's tokens, EOS
	ids, mask = make([]int64, len(tokens)), make([]int64, len(tokens))
	for j, id := range tokens {
		ids[j] = int64(id)
		if j < used {
			mask[j] = 1
		}
	}
	return ids, mask
}

// fillRows repeats row into every one of n rows of an integer input.
func fillRows(call *models.Call, name string, row []int64, n int) error {
	buf, err := call.Int64(name)
	if err != nil {
		return err
	}
	for i := range n {
		copy(buf[i*len(row):(i+1)*len(row)], row)
	}
	return nil
}

// cosine writes LogitScale * cos(image_i, text_i), normalised.
func (r *Preference) cosine(call *models.Call, n int, dst []float64) error {
	img, ishape, err := call.Output(r.imgOut)
	if err != nil {
		return err
	}
	txt, tshape, err := call.Output(r.txtOut)
	if err != nil {
		return err
	}
	if len(ishape) != 2 || len(tshape) != 2 || ishape[0] != int64(n) || !slices.Equal(ishape, tshape) {
		return fmt.Errorf("embeddings %s %v and %s %v must both be [batch, dim]", r.imgOut, ishape, r.txtOut, tshape)
	}
	d := int(ishape[1])
	for i := range n {
		dst[i] = r.normalise(r.o.LogitScale * cosine(img[i*d:(i+1)*d], txt[i*d:(i+1)*d]))
	}
	return nil
}

func (r *Preference) normalise(raw float64) float64 { return (raw - r.o.Shift) / r.o.Scale }

// cosine is the cosine similarity of a and b in float64 (NaN when either is zero).
func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	return ab / math.Sqrt(aa*bb)
}

// Close releases the scorer's session. It must not run while a Score does.
func (r *Preference) Close() error {
	return r.calls.close()
}

// presetNames lists the preference presets, for messages and docs.
func presetNames() string {
	names := make([]string, 0, len(preferencePresets))
	for k := range preferencePresets {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
