package rewards

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/models"
)

// maxCachedCalls bounds the prepared calls a callCache keeps. Particle batches repeat one shape,
// but OCR crops vary in width; past the bound the oldest call is closed.
const maxCachedCalls = 16

// callCache keeps prepared [models.Call]s of one session by input shapes, so that scoring the
// same batch shape again allocates no tensors. It is not safe for concurrent use.
type callCache struct {
	sess  *models.Session
	calls map[string]*models.Call
	order []string // keys, oldest first
	key   strings.Builder
}

func newCallCache(sess *models.Session) *callCache {
	return &callCache{sess: sess, calls: map[string]*models.Call{}}
}

// get returns the call for shapes, preparing it on first use.
func (c *callCache) get(shapes models.Shapes) (*models.Call, error) {
	c.key.Reset()
	names := make([]string, 0, len(shapes))
	for name := range shapes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c.key.WriteString(name)
		for _, d := range shapes[name] {
			c.key.WriteByte(',')
			c.key.WriteString(strconv.FormatInt(d, 10))
		}
		c.key.WriteByte(';')
	}
	k := c.key.String()
	if call, ok := c.calls[k]; ok {
		return call, nil
	}
	call, err := c.sess.NewCall(shapes)
	if err != nil {
		return nil, err
	}
	if len(c.order) == maxCachedCalls {
		old := c.order[0]
		c.calls[old].Close()
		delete(c.calls, old)
		c.order = c.order[1:]
	}
	c.calls[k] = call
	c.order = append(c.order, k)
	return call, nil
}

// close closes every cached call and then the session.
func (c *callCache) close() error {
	for _, call := range c.calls {
		call.Close()
	}
	c.calls, c.order = nil, nil
	return c.sess.Close()
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
