package rewards

import (
	"context"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

func init() {
	Register("classifier", newClassifier, append([]string{"model", "labels", "target", "score", "input", "output"}, imageOptionKeys...)...)
}

// ScoreKind is what a classifier reward returns for the target class.
type ScoreKind string

// Classifier score kinds.
const (
	LogProb ScoreKind = "logprob"
	Prob    ScoreKind = "prob"
	Logit   ScoreKind = "logit"
)

// Classifier scores images by an ONNX image classifier's belief in a target class: the
// log-probability (log-softmax of the logits, in float64), the probability, or the raw logit.
//
// Preprocessing follows [ImageOptions]: by default a centre crop of `crop` pixels (0 = none), a
// bilinear stretch to the model's input size, channel mapping (grey to RGB by repetition, RGB to
// grey by BT.601 luma), then v' = (v - mean)/std with mean and std 0.5, mapping [0, 1] to
// [-1, 1] as MNIST models trained on (x/255-0.5)/0.5 expect.
type Classifier struct {
	sess    *models.Session
	input   string
	output  string
	target  int // -1: read from each prompt
	classes int // from the model's output shape; 0 where it is dynamic
	labels  []string
	kind    ScoreKind
	prep    *imagePrep
	calls   *sessionCalls
}

var firstInteger = regexp.MustCompile(`\b\d+\b`)

func newClassifier(o *Options, env Env) (Reward, error) {
	path := o.String("model", "")
	if path == "" {
		return nil, fmt.Errorf("reward classifier: option model=PATH (an ONNX image classifier) is required")
	}
	var labels []string
	if lp := o.String("labels", ""); lp != "" {
		data, err := os.ReadFile(lp)
		if err != nil {
			return nil, fmt.Errorf("reward classifier: labels: %w", err)
		}
		for _, l := range strings.Split(strings.TrimRight(string(data), "\r\n"), "\n") {
			labels = append(labels, strings.TrimSpace(l))
		}
	}
	target := -1
	if t := o.String("target", ""); t != "" {
		var err error
		if target, err = classIndex(t, labels); err != nil {
			return nil, fmt.Errorf("reward classifier: target=%q: %w", t, err)
		}
	}
	img, err := parseImageOptions(o, ImageOptions{Mean: []float64{0.5}, Std: []float64{0.5}})
	if err != nil {
		return nil, err
	}
	if env.ImageHeight > 0 && env.ImageWidth > 0 {
		if err := checkCrop(img.Crop, env.ImageHeight, env.ImageWidth); err != nil {
			return nil, err
		}
	}
	kind := ScoreKind(o.String("score", string(LogProb)))
	if kind != LogProb && kind != Prob && kind != Logit {
		return nil, fmt.Errorf("reward classifier: score=%q is not logprob, prob or logit", kind)
	}
	return NewClassifier(path, ClassifierOptions{
		Input: o.String("input", ""), Output: o.String("output", ""),
		Target: target, Labels: labels, Image: img, Score: kind,
	}, env.ModelOptions...)
}

// classIndex reads a class given as a number or, with labels, as a label; -1 means "from the
// prompt".
func classIndex(s string, labels []string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < -1 {
			return 0, fmt.Errorf("class numbers start at 0 (-1, or no target, reads the class from the prompt)")
		}
		return n, nil
	}
	for i, l := range labels {
		if strings.EqualFold(l, s) {
			return i, nil
		}
	}
	if labels == nil {
		return 0, fmt.Errorf("not a class number (name classes with labels=FILE to use their names)")
	}
	return 0, fmt.Errorf("no such class number or label")
}

// ClassifierOptions configure [NewClassifier].
type ClassifierOptions struct {
	// Input and Output name the tensors; empty means the model's only one.
	Input, Output string
	// Target is the class scored; -1 reads it from each prompt: the longest label (see Labels)
	// the prompt contains as a word, else its first whole number.
	Target int
	// Labels name the classes in index order (optional).
	Labels []string
	// Crop is the centre-crop size applied before resizing (0: none), and Mean and Std
	// normalise pixel values in [0, 1] in every channel. They apply where Image leaves its
	// Crop, Mean and Std unset.
	Crop      int
	Mean, Std float64
	// Image is the rest of the preprocessing: the input size of models with dynamic sizes,
	// per-channel normalisation, channel order and layout.
	Image ImageOptions
	Score ScoreKind
}

// NewClassifier loads an ONNX classifier with a float image input ([batch, C, H, W] or
// [batch, H, W, C]) and [batch, classes] logits.
func NewClassifier(path string, o ClassifierOptions, opts ...models.Option) (*Classifier, error) {
	img := o.Image
	if img.Crop == 0 {
		img.Crop = o.Crop
	}
	if len(img.Mean) == 0 {
		img.Mean = []float64{o.Mean}
	}
	if len(img.Std) == 0 {
		img.Std = []float64{o.Std}
	}
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, fmt.Errorf("reward classifier: %w", err)
	}
	r := &Classifier{sess: sess, target: o.Target, labels: o.Labels, kind: o.Score, calls: newSessionCalls(sess)}
	if r.kind == "" {
		r.kind = LogProb
	}
	if err := r.bind(o.Input, o.Output, img); err != nil {
		sess.Close()
		return nil, fmt.Errorf("reward classifier %s: %w", path, err)
	}
	// A target the model cannot score fails now, not on the first image.
	if r.classes > 0 && r.target >= r.classes {
		sess.Close()
		return nil, fmt.Errorf("reward classifier: target=%d, but %s has %d classes: target must be 0 to %d", r.target, path, r.classes, r.classes-1)
	}
	return r, nil
}

func (r *Classifier) bind(input, output string, img ImageOptions) error {
	anyTensor := func(models.TensorInfo) bool { return true }
	in, err := pickTensor(r.sess.Inputs, input, "input", "input", anyTensor)
	if err != nil {
		return err
	}
	out, err := pickTensor(r.sess.Outputs, output, "output", "output", anyTensor)
	if err != nil {
		return err
	}
	if r.prep, err = newImagePrep(in, img); err != nil {
		return err
	}
	r.input, r.output = in.Name, out.Name
	if n := len(out.Dims); n > 0 && out.Dims[n-1] > 0 {
		r.classes = int(out.Dims[n-1])
	}
	return nil
}

// checkCrop refuses a centre crop larger than h x w images: it would crop nothing, silently,
// and the model would see a different part of the image than the spec says.
func checkCrop(crop, h, w int) error {
	if crop > min(h, w) {
		return fmt.Errorf("reward classifier: crop=%d is larger than the %dx%d images: crop must be 1 to %d (0: no crop)", crop, w, h, min(h, w))
	}
	return nil
}

// Name is "classifier".
func (r *Classifier) Name() string { return "classifier" }

// Score runs all images through the classifier in one batch.
func (r *Classifier) Score(ctx context.Context, imgs pixels.Images, prompt string, dst []float64) error {
	if err := checkBatch(imgs, dst); err != nil {
		return err
	}
	target, err := r.promptTarget(prompt)
	if err != nil {
		return err
	}
	if err := checkCrop(r.prep.opts.Crop, imgs.H, imgs.W); err != nil {
		return err
	}
	return r.logits(ctx, imgs, func(logits []float32, classes int) error {
		if target >= classes {
			return fmt.Errorf("reward classifier: target class %d, but the model has %d classes: the class must be 0 to %d", target, classes, classes-1)
		}
		for i := range imgs.N {
			dst[i] = classScore(logits[i*classes:(i+1)*classes], target, r.kind)
		}
		return nil
	})
}

// promptTarget is the configured target, or the class the prompt names.
// CheckPrompt reports whether the classifier can score the images of prompt: with no fixed
// target, the prompt must name a class. It runs no model, so a batch checks every item with it
// before any work (such an item would fail the same way on every retry).
func (r *Classifier) CheckPrompt(prompt string) error {
	_, err := r.promptTarget(prompt)
	return err
}

func (r *Classifier) promptTarget(prompt string) (int, error) {
	if r.target >= 0 {
		return r.target, nil
	}
	best, bestLen := -1, 0
	lower := " " + strings.ToLower(prompt) + " "
	for i, l := range r.labels {
		if len(l) > bestLen && containsWord(lower, strings.ToLower(l)) {
			best, bestLen = i, len(l)
		}
	}
	if best >= 0 {
		return best, nil
	}
	if m := firstInteger.FindString(prompt); m != "" {
		return strconv.Atoi(m)
	}
	return 0, fmt.Errorf("reward classifier: no target class given (target=N) and prompt %q names no class (a number, or a label of labels=FILE)", prompt)
}

// containsWord reports whether w occurs in s (padded with spaces) between non-letters.
func containsWord(s, w string) bool {
	if w == "" {
		return false
	}
	for off := 0; ; {
		i := strings.Index(s[off:], w)
		if i < 0 {
			return false
		}
		i += off
		before, after := s[i-1], s[i+len(w)]
		if !isWordByte(before) && !isWordByte(after) {
			return true
		}
		off = i + 1
	}
}

func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b >= 0x80
}

// TopClass writes each image's most likely class into dst (len(dst) == imgs.N): the
// classifier's verdict, for judging generated images independently of any reward.
func (r *Classifier) TopClass(ctx context.Context, imgs pixels.Images, dst []int) error {
	if err := imgs.Validate(); err != nil {
		return err
	}
	if len(dst) != imgs.N {
		return fmt.Errorf("classify %d images into %d slots", imgs.N, len(dst))
	}
	if err := checkCrop(r.prep.opts.Crop, imgs.H, imgs.W); err != nil {
		return err
	}
	return r.logits(ctx, imgs, func(logits []float32, classes int) error {
		for i := range imgs.N {
			row := logits[i*classes : (i+1)*classes]
			best := 0
			for k, v := range row {
				if v > row[best] {
					best = k
				}
			}
			dst[i] = best
		}
		return nil
	})
}

// logits preprocesses and classifies a batch and hands use the logits, imgs.N rows of classes
// values, which belong to the model call and stay valid only until use returns.
func (r *Classifier) logits(ctx context.Context, imgs pixels.Images, use func(logits []float32, classes int) error) error {
	return r.calls.with(models.Shapes{r.input: r.prep.shape(imgs.N)}, func(call *models.Call) error {
		in, err := call.Float32(r.input)
		if err != nil {
			return err
		}
		r.prep.fill(in, imgs)
		if err := call.Run(ctx); err != nil {
			return fmt.Errorf("reward classifier: %w", err)
		}
		logits, shape, err := call.Output(r.output)
		if err != nil {
			return err
		}
		classes := int(shape[len(shape)-1])
		if len(logits) != imgs.N*classes {
			return fmt.Errorf("reward classifier: output %s has shape %v; want [batch, classes]", r.output, shape)
		}
		return use(logits, classes)
	})
}

// classScore turns one row of logits into the requested score, in float64.
func classScore(logits []float32, target int, kind ScoreKind) float64 {
	if kind == Logit {
		return float64(logits[target])
	}
	m := math.Inf(-1)
	for _, v := range logits {
		m = max(m, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - m)
	}
	lp := float64(logits[target]) - m - math.Log(sum)
	if kind == Prob {
		return math.Exp(lp)
	}
	return lp
}

// Close releases the classifier's session. It must not run while a Score does.
func (r *Classifier) Close() error {
	return r.calls.close()
}
