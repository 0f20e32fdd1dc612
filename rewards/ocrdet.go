package rewards

import (
	"context"
	"fmt"
	"math"

	"github.com/fksteer/fksteer/models"
)

// Text detection as PaddleOCR's TextDetector does it for DB models: the 8-bit BGR image is
// resized (cv2.resize, INTER_LINEAR) so its sides are multiples of 32 (DetResizeForTest),
// normalised in float32 as (v/255 - mean) / std with ImageNet's mean and std indexed in BGR
// order (PaddleOCR's NormalizeImage applies the RGB-ordered constants to OpenCV's BGR arrays),
// and the probability map is post-processed into boxes (dbpost.go).

// detector runs a DB text detector.
type detector struct {
	sess   *models.Session
	input  models.TensorInfo
	output string
	o      OCROptions
	calls  *sessionCalls
}

func newDetector(path string, o OCROptions, opts []models.Option) (*detector, error) {
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, err
	}
	d := &detector{sess: sess, o: o, calls: newSessionCalls(sess)}
	d.input, err = pickTensor(sess.Inputs, "", "input", "det", func(t models.TensorInfo) bool { return len(t.Dims) == 4 && t.Type.IsFloat() })
	if err == nil && d.input.Dims[1] > 0 && d.input.Dims[1] != 3 {
		err = fmt.Errorf("input %s is not [batch, 3, height, width]", d.input)
	}
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

// detect finds the text boxes of every image (all of one size), running the detector on as
// many images per Run as DetBatch allows (all by default).
func (d *detector) detect(ctx context.Context, imgs []bgr8) ([][]quad, error) {
	if len(imgs) == 0 {
		return nil, nil
	}
	h, w := imgs[0].h, imgs[0].w
	rh, rw := detSize(h, w, d.o.DetLimit, d.o.DetLimitType)
	if d.input.Dims[2] > 0 && int(d.input.Dims[2]) != rh || d.input.Dims[3] > 0 && int(d.input.Dims[3]) != rw {
		return nil, fmt.Errorf("detector input %s cannot take the %dx%d image PaddleOCR's resizing makes of %dx%d", d.input, rh, rw, h, w)
	}
	step := len(imgs)
	if d.o.DetBatch > 0 {
		step = min(step, d.o.DetBatch)
	}
	step = batchLimit(d.input, step)
	boxes := make([][]quad, len(imgs))
	plane := make([]uint8, rh*rw) // one resized plane
	for lo := 0; lo < len(imgs); lo += step {
		k := min(step, len(imgs)-lo)
		err := d.calls.with(models.Shapes{d.input.Name: {int64(k), 3, int64(rh), int64(rw)}}, func(call *models.Call) error {
			in, err := call.Float32(d.input.Name)
			if err != nil {
				return err
			}
			for i := range k {
				for c := range 3 {
					resizeLinear8(plane, rh, rw, imgs[lo+i].plane(c), h, w)
					mean, std := float32(ImageNetMean[c]), float32(ImageNetStd[c])
					dst := in[(i*3+c)*rh*rw:][:rh*rw]
					for j, v := range plane {
						dst[j] = (float32(v)*float32(1.0/255) - mean) / std
					}
				}
			}
			if err := call.Run(ctx); err != nil {
				return err
			}
			prob, shape, err := call.Output(d.output)
			if err != nil {
				return err
			}
			if len(shape) != 4 || int(shape[0]) != k || shape[1] != 1 {
				return fmt.Errorf("detector output %s has shape %v; want [%d, 1, H, W]", d.output, shape, k)
			}
			mh, mw := int(shape[2]), int(shape[3])
			for i := range k {
				boxes[lo+i] = dbBoxes(prob[i*mh*mw:(i+1)*mh*mw], mh, mw, h, w, d.o.DB)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return boxes, nil
}

func (d *detector) close() error { return d.calls.close() }
