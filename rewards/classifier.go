package rewards

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"sync"

	"github.com/fksteer/fksteer/models"
)

func init() { Register("classifier", newClassifier) }

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
// Preprocessing, in order: centre-crop to `crop` pixels (0 = none), bilinear resize to the
// model's input size, channel mapping (grey to RGB by repetition, RGB to grey by BT.601 luma),
// then v' = (v - mean)/std with mean and std from the options (defaults 0.5 and 0.5, mapping
// [0, 1] to [-1, 1] as MNIST models trained on (x/255-0.5)/0.5 expect).
type Classifier struct {
	sess        *models.Session
	input       string
	output      string
	c, h, w     int
	crop        int
	mean, std   float64
	target      int // -1: read from each prompt
	kind        ScoreKind
	mu          sync.Mutex
	calls       map[int]*models.Call
	scratch     []float32
	cropScratch []float32
}

var firstInteger = regexp.MustCompile(`\b\d+\b`)

func newClassifier(o *Options, env Env) (Reward, error) {
	path := o.String("model", "")
	if path == "" {
		return nil, fmt.Errorf("reward classifier: option model=PATH (an ONNX image classifier) is required")
	}
	target, err := o.Int("target", -1)
	if err != nil {
		return nil, err
	}
	crop, err := o.Int("crop", 0)
	if err != nil {
		return nil, err
	}
	mean, err := o.Float("mean", 0.5)
	if err != nil {
		return nil, err
	}
	std, err := o.Float("std", 0.5)
	if err != nil {
		return nil, err
	}
	kind := ScoreKind(o.String("score", string(LogProb)))
	if kind != LogProb && kind != Prob && kind != Logit {
		return nil, fmt.Errorf("reward classifier: score=%q is not logprob, prob or logit", kind)
	}
	if std <= 0 {
		return nil, fmt.Errorf("reward classifier: std must be positive")
	}
	return NewClassifier(path, ClassifierOptions{
		Input: o.String("input", ""), Output: o.String("output", ""),
		Target: target, Crop: crop, Mean: mean, Std: std, Score: kind,
	}, env.ModelOptions...)
}

// ClassifierOptions configure [NewClassifier].
type ClassifierOptions struct {
	// Input and Output name the tensors; empty means the model's only one.
	Input, Output string
	// Target is the class scored; -1 reads it from each prompt (its first whole number).
	Target int
	// Crop is the centre-crop size applied before resizing (0: none).
	Crop int
	// Mean and Std normalise pixel values in [0, 1].
	Mean, Std float64
	Score     ScoreKind
}

// NewClassifier loads an ONNX classifier with a float [batch, C, H, W] input and [batch, classes] logits.
func NewClassifier(path string, o ClassifierOptions, opts ...models.Option) (*Classifier, error) {
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, fmt.Errorf("reward classifier: %w", err)
	}
	r := &Classifier{sess: sess, crop: o.Crop, mean: o.Mean, std: o.Std, target: o.Target, kind: o.Score, calls: map[int]*models.Call{}}
	if r.kind == "" {
		r.kind = LogProb
	}
	if err := r.bind(o.Input, o.Output); err != nil {
		sess.Close()
		return nil, fmt.Errorf("reward classifier %s: %w", path, err)
	}
	return r, nil
}

func (r *Classifier) bind(input, output string) error {
	pick := func(ts []models.TensorInfo, name, kind string, require func(string) (models.TensorInfo, error)) (models.TensorInfo, error) {
		if name != "" {
			return require(name)
		}
		if len(ts) != 1 {
			return models.TensorInfo{}, fmt.Errorf("the model has %d %ss; name one with %s=", len(ts), kind, kind)
		}
		return ts[0], nil
	}
	in, err := pick(r.sess.Inputs, input, "input", r.sess.RequireInput)
	if err != nil {
		return err
	}
	out, err := pick(r.sess.Outputs, output, "output", r.sess.RequireOutput)
	if err != nil {
		return err
	}
	if len(in.Dims) != 4 || !in.Type.IsFloat() || in.Dims[1] <= 0 || in.Dims[2] <= 0 || in.Dims[3] <= 0 {
		return fmt.Errorf("input %s must be float [batch, C, H, W] with fixed C, H and W", in)
	}
	r.input, r.output = in.Name, out.Name
	r.c, r.h, r.w = int(in.Dims[1]), int(in.Dims[2]), int(in.Dims[3])
	return nil
}

// Name is "classifier".
func (r *Classifier) Name() string { return "classifier" }

// Score runs all images through the classifier in one batch.
func (r *Classifier) Score(ctx context.Context, imgs models.Images, prompt string, dst []float64) error {
	if err := checkBatch(imgs, dst); err != nil {
		return err
	}
	target := r.target
	if target < 0 {
		m := firstInteger.FindString(prompt)
		if m == "" {
			return fmt.Errorf("reward classifier: no target class given (target=N) and prompt %q has no class number", prompt)
		}
		target, _ = strconv.Atoi(m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	logits, classes, err := r.logits(ctx, imgs)
	if err != nil {
		return err
	}
	if target >= classes {
		return fmt.Errorf("reward classifier: target class %d, but the model has %d classes", target, classes)
	}
	for i := range imgs.N {
		dst[i] = classScore(logits[i*classes:(i+1)*classes], target, r.kind)
	}
	return nil
}

// TopClass writes each image's most likely class into dst (len(dst) == imgs.N): the
// classifier's verdict, for judging generated images independently of any reward.
func (r *Classifier) TopClass(ctx context.Context, imgs models.Images, dst []int) error {
	if err := imgs.Validate(); err != nil {
		return err
	}
	if len(dst) != imgs.N {
		return fmt.Errorf("classify %d images into %d slots", imgs.N, len(dst))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	logits, classes, err := r.logits(ctx, imgs)
	if err != nil {
		return err
	}
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
}

// logits preprocesses and classifies a batch; the result is owned by the cached call. r.mu must
// be held.
func (r *Classifier) logits(ctx context.Context, imgs models.Images) ([]float32, int, error) {
	call, err := r.call(imgs.N)
	if err != nil {
		return nil, 0, err
	}
	in, err := call.Float32(r.input)
	if err != nil {
		return nil, 0, err
	}
	r.preprocess(imgs, in)
	if err := call.Run(ctx); err != nil {
		return nil, 0, fmt.Errorf("reward classifier: %w", err)
	}
	logits, shape, err := call.Output(r.output)
	if err != nil {
		return nil, 0, err
	}
	return logits, int(shape[len(shape)-1]), nil
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

func (r *Classifier) call(n int) (*models.Call, error) {
	if c, ok := r.calls[n]; ok {
		return c, nil
	}
	c, err := r.sess.NewCall(models.Shapes{r.input: {int64(n), int64(r.c), int64(r.h), int64(r.w)}})
	if err != nil {
		return nil, fmt.Errorf("reward classifier: %w", err)
	}
	r.calls[n] = c
	return c, nil
}

func (r *Classifier) preprocess(imgs models.Images, in []float32) {
	plane := imgs.H * imgs.W
	if len(r.scratch) < plane {
		r.scratch = make([]float32, plane)
		r.cropScratch = make([]float32, plane)
	}
	out := r.h * r.w
	for i := range imgs.N {
		img := imgs.At(i)
		for c := range r.c {
			src := channelPlane(img, imgs.C, plane, c, r.c, r.scratch)
			h, w := imgs.H, imgs.W
			if r.crop > 0 {
				h, w = centerCrop(r.cropScratch, src, h, w, r.crop)
				src = r.cropScratch
			}
			dst := in[(i*r.c+c)*out : (i*r.c+c+1)*out]
			resizeBilinear(dst, r.h, r.w, src, h, w)
			for j, v := range dst {
				dst[j] = float32((float64(v) - r.mean) / r.std)
			}
		}
	}
}

// Close releases the classifier's session.
func (r *Classifier) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.calls {
		c.Close()
	}
	r.calls = nil
	return r.sess.Close()
}
