package rewards

import (
	"context"
	"fmt"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

// visionModel is a session with one float image input, which it fills through an imagePrep and
// runs in as few batches as the model allows (one, unless its batch dimension is fixed). It is
// safe for concurrent use.
type visionModel struct {
	sess  *models.Session
	input models.TensorInfo
	prep  *imagePrep
	calls *sessionCalls
}

// openVision opens path and binds its image input (named, or the only float rank-4 input). A
// model with a dynamic input size gets side x side unless img names a size.
func openVision(path, input string, img ImageOptions, side int, opts []models.Option) (*visionModel, error) {
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, err
	}
	in, err := pickTensor(sess.Inputs, input, "input", "input", func(t models.TensorInfo) bool {
		return len(t.Dims) == 4 && t.Type.IsFloat()
	})
	if err == nil && len(sess.Inputs) > 1 {
		err = fmt.Errorf("the model has inputs besides %s (%v); fksteer feeds only the image", in.Name, sess.Inputs)
	}
	var prep *imagePrep
	if err == nil {
		prep, err = newImagePrep(in, withDefaultSize(in, img, side))
	}
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &visionModel{sess: sess, input: in, prep: prep, calls: newSessionCalls(sess)}, nil
}

// output checks that the model has the named output (or, when name is empty, picks the one
// output satisfying ok) and returns it.
func (m *visionModel) output(name, option string, ok func(models.TensorInfo) bool) (models.TensorInfo, error) {
	out, err := pickTensor(m.sess.Outputs, name, "output", option, ok)
	if err != nil {
		return models.TensorInfo{}, fmt.Errorf("%s: %w", m.sess.Path, err)
	}
	return out, nil
}

// run preprocesses n images and runs the model on them. fill(in, lo, k) writes images lo..lo+k-1
// (preprocessed) into in; use(call, lo, k) reads the outputs of those images after each Run,
// which stay valid only until use returns.
func (m *visionModel) run(ctx context.Context, n int, fill func(in []float32, lo, k int), use func(call *models.Call, lo, k int) error) error {
	step := batchLimit(m.input, n)
	for lo := 0; lo < n; lo += step {
		k := min(step, n-lo)
		err := m.calls.with(models.Shapes{m.input.Name: m.prep.shape(k)}, func(call *models.Call) error {
			in, err := call.Float32(m.input.Name)
			if err != nil {
				return err
			}
			fill(in, lo, k)
			if err := call.Run(ctx); err != nil {
				return err
			}
			return use(call, lo, k)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// runImages is run for a batch of same-sized images.
func (m *visionModel) runImages(ctx context.Context, imgs pixels.Images, use func(call *models.Call, lo, k int) error) error {
	return m.run(ctx, imgs.N, func(in []float32, lo, k int) {
		sub := pixels.Images{N: k, C: imgs.C, H: imgs.H, W: imgs.W, Pix: imgs.Pix[lo*imgs.Len() : (lo+k)*imgs.Len()]}
		m.prep.fill(in, sub)
	}, use)
}

func (m *visionModel) close() error { return m.calls.close() }
