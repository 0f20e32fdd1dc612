package rewards

import (
	"context"
	"fmt"
	"math"

	"github.com/fksteer/fksteer/models"
)

// Text detection as PaddleOCR's TextDetector does it for DB models: the image is resized so its
// sides are multiples of 32 (DetResizeForTest), fed in BGR order normalised with ImageNet's mean
// and std (indexed in that BGR order, as PaddleOCR's NormalizeImage applies them to OpenCV's
// BGR arrays), and the probability map is post-processed into boxes (dbpost.go).

// detector runs a DB text detector.
type detector struct {
	sess   *models.Session
	input  models.TensorInfo
	output string
	o      OCROptions
	calls  *callCache
	preps  map[[2]int]*imagePrep // by input size: images of one size share one
}

func newDetector(path string, o OCROptions, opts []models.Option) (*detector, error) {
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, err
	}
	d := &detector{sess: sess, o: o, calls: newCallCache(sess), preps: map[[2]int]*imagePrep{}}
	d.input, err = pickTensor(sess.Inputs, "", "input", "det", func(t models.TensorInfo) bool { return len(t.Dims) == 4 && t.Type.IsFloat() })
	var out models.TensorInfo
	if err == nil {
		out, err = pickTensor(sess.Outputs, "", "output", "det", func(t models.TensorInfo) bool { return len(t.Dims) == 4 })
	}
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("detector %s: %w", path, err)
	}
	d.output = out.Name
	return d, nil
}

// detSize is DetResizeForTest's size for an h x w image: scaled down so the longer side is at
// most limit ("max"), or up so the shorter side is at least limit ("min"), then each side
// rounded to a multiple of 32 (at least 32).
func detSize(h, w, limit int, limitType string) (int, int) {
	ratio := 1.0
	switch {
	case limitType == "max" && max(h, w) > limit:
		ratio = float64(limit) / float64(max(h, w))
	case limitType == "min" && min(h, w) < limit:
		ratio = float64(limit) / float64(min(h, w))
	}
	round32 := func(v int) int { return max(int(math.RoundToEven(float64(v)/32))*32, 32) }
	return round32(int(float64(h) * ratio)), round32(int(float64(w) * ratio))
}

// detect finds the text boxes of every image, running the detector on as many images per
// Run as DetBatch allows (all by default).
func (d *detector) detect(ctx context.Context, imgs models.Images) ([][]quad, error) {
	rh, rw := detSize(imgs.H, imgs.W, d.o.DetLimit, d.o.DetLimitType)
	prep := d.preps[[2]int{rh, rw}]
	if prep == nil {
		var err error
		prep, err = newImagePrep(d.input, ImageOptions{Height: rh, Width: rw, Mean: ImageNetMean, Std: ImageNetStd, BGR: true})
		if err != nil {
			return nil, err
		}
		d.preps[[2]int{rh, rw}] = prep
	}
	step := imgs.N
	if d.o.DetBatch > 0 {
		step = min(step, d.o.DetBatch)
	}
	step = batchLimit(d.input, step)
	boxes := make([][]quad, imgs.N)
	for lo := 0; lo < imgs.N; lo += step {
		k := min(step, imgs.N-lo)
		call, err := d.calls.get(models.Shapes{d.input.Name: prep.shape(k)})
		if err != nil {
			return nil, err
		}
		in, err := call.Float32(d.input.Name)
		if err != nil {
			return nil, err
		}
		prep.fill(in, models.Images{N: k, C: imgs.C, H: imgs.H, W: imgs.W, Pix: imgs.Pix[lo*imgs.Len() : (lo+k)*imgs.Len()]})
		if err := call.Run(ctx); err != nil {
			return nil, err
		}
		prob, shape, err := call.Output(d.output)
		if err != nil {
			return nil, err
		}
		if len(shape) != 4 || int(shape[0]) != k || shape[1] != 1 {
			return nil, fmt.Errorf("detector output %s has shape %v; want [%d, 1, H, W]", d.output, shape, k)
		}
		mh, mw := int(shape[2]), int(shape[3])
		for i := range k {
			boxes[lo+i] = dbBoxes(prob[i*mh*mw:(i+1)*mh*mw], mh, mw, imgs.H, imgs.W, d.o.DB)
		}
	}
	return boxes, nil
}

func (d *detector) close() error { return d.calls.close() }
