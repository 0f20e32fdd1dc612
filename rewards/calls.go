package rewards

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fksteer/fksteer/models"
)

// maxIdleCalls bounds the prepared calls a session keeps idle. Particle batches repeat one
// shape, but OCR crops vary in width; past the bound the call idle the longest is closed.
const maxIdleCalls = 16

// sessionCalls is a session with its prepared calls, pooled by input shapes, so that scoring
// the same batch shape again allocates no tensors. It is safe for concurrent use: each
// goroutine runs a call of its own.
type sessionCalls struct {
	sess *models.Session
	pool models.CallPool[string, *models.Call]
}

func newSessionCalls(sess *models.Session) *sessionCalls {
	c := &sessionCalls{sess: sess}
	c.pool.Limit = maxIdleCalls
	return c
}

// with hands use a prepared call for shapes, which no other goroutine touches until use
// returns; its outputs are valid only until then. use's error is returned as it is.
func (c *sessionCalls) with(shapes models.Shapes, use func(call *models.Call) error) error {
	key := shapes.Key()
	call, err := c.pool.Get(key, func() (*models.Call, error) { return c.sess.NewCall(shapes) })
	if err != nil {
		return err
	}
	defer c.pool.Put(key, call)
	return use(call)
}

// close closes every idle call and then the session; it must not run while a with does.
func (c *sessionCalls) close() error {
	return errors.Join(c.pool.Close(), c.sess.Close())
}

// pickTensor returns the named tensor of ts, or, when name is empty, the only tensor for which
// ok holds. what ("input", "output") and option (the spec key that names it) go into errors.
func pickTensor(ts []models.TensorInfo, name, what, option string, ok func(models.TensorInfo) bool) (models.TensorInfo, error) {
	var have []string
	var found []models.TensorInfo
	for _, t := range ts {
		have = append(have, t.String())
		if name != "" && t.Name == name || name == "" && ok(t) {
			found = append(found, t)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case name != "":
		return models.TensorInfo{}, fmt.Errorf("the model has no %s named %q (it has: %s); fix %s=", what, name, strings.Join(have, ", "), option)
	case len(found) == 0:
		return models.TensorInfo{}, fmt.Errorf("the model has no suitable %s (it has: %s); name one with %s=", what, strings.Join(have, ", "), option)
	}
	return models.TensorInfo{}, fmt.Errorf("the model has several candidate %ss (%s); name one with %s=", what, strings.Join(have, ", "), option)
}

// batchLimit is the largest batch a model input accepts: its fixed first dimension, or n when
// that dimension is dynamic. Models exported with a batch of 1 (such as the LAION aesthetic
// head) are run once per image.
func batchLimit(in models.TensorInfo, n int) int {
	if len(in.Dims) > 0 && in.Dims[0] > 0 {
		return min(n, int(in.Dims[0]))
	}
	return n
}
