package models

import (
	"context"
	"fmt"
	"slices"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// Shapes gives the concrete shape of every input of a [Call].
type Shapes map[string][]int64

// Call is a prepared, reusable run of a session at fixed input shapes. It owns its input and
// output buffers, so a loop that runs the same shapes every step allocates nothing per step:
// the caller writes into the slices [Call.Float32] and [Call.Int64] return, calls Run, and reads
// [Call.Output]. Where the model declares float32 or int64, the caller's slice is the very memory
// ONNX Runtime reads; other declared types (float16, int32) are converted at each Run.
//
// A Call is not safe for concurrent use; make one per goroutine.
type Call struct {
	s       *Session
	ins     []*slot
	outs    []*slot
	inVals  []ort.Value
	outVals []ort.Value
	opts    *ort.RunOptions
	ctx     context.Context
	stop    func() bool
	// hookDone closes when the hook stop would have removed has finished running.
	hookDone chan struct{}

	runs    int
	runTime time.Duration
}

// slot is one input or output: the caller-side data and the value ONNX Runtime sees.
type slot struct {
	info  TensorInfo
	shape []int64
	f32   []float32 // caller side for float types
	i64   []int64   // caller side for integer types
	f16   []byte    // runtime side for float16
	i32   []int32   // runtime side for int32
	value ort.Value
}

// NewCall prepares a run with the given input shapes. Every input of the model must have a
// shape, of the declared rank and agreeing with every fixed dimension. shapes may also give
// the shape of an output, which a float16 output needs when no input determines its dynamic
// dimensions (a text encoder's [batch, sequence, features] states, say); other outputs are
// sized by ONNX Runtime.
func (s *Session) NewCall(shapes Shapes) (_ *Call, err error) {
	c := &Call{s: s}
	defer func() {
		if err != nil {
			c.Close() // a half-built Call releases what it allocated
		}
	}()
	for name := range shapes {
		if _, ok := s.Output(name); ok {
			continue
		}
		if _, err := s.RequireInput(name); err != nil {
			return nil, err
		}
	}
	for _, in := range s.Inputs {
		shape, ok := shapes[in.Name]
		if !ok {
			return nil, fmt.Errorf("model %s: no shape given for input %s", s.Path, in)
		}
		sl, err := newInput(in, shape)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", s.Path, err)
		}
		c.ins = append(c.ins, sl)
		c.inVals = append(c.inVals, sl.value)
	}
	c.outVals = make([]ort.Value, len(s.Outputs))
	for i, out := range s.Outputs {
		if out.Type == Unsupported {
			return nil, fmt.Errorf("model %s: output %s has element type %s, which fksteer does not convert", s.Path, out.Name, out.ONNXType)
		}
		sl := &slot{info: out}
		if out.Type == Float16 {
			// onnxruntime_go cannot take over a float16 output that ONNX Runtime allocated (it copies
			// one byte per element), so float16 outputs live in buffers of our own.
			if err := sl.allocFloat16Output(c.ins, shapes[out.Name]); err != nil {
				return nil, fmt.Errorf("model %s: %w", s.Path, err)
			}
			c.outVals[i] = sl.value
		}
		c.outs = append(c.outs, sl)
	}
	if c.opts, err = ort.NewRunOptions(); err != nil {
		return nil, fmt.Errorf("create run options: %w", err)
	}
	return c, nil
}

func checkShape(info TensorInfo, shape []int64) error {
	if len(shape) != len(info.Dims) {
		return fmt.Errorf("input %s: shape %v has rank %d, the model declares rank %d", info, shape, len(shape), len(info.Dims))
	}
	for i, d := range shape {
		if d <= 0 {
			return fmt.Errorf("input %s: shape %v has a non-positive dimension", info, shape)
		}
		if info.Dims[i] >= 0 && info.Dims[i] != d {
			return fmt.Errorf("input %s: shape %v disagrees with the declared dimension %d = %d", info, shape, i, info.Dims[i])
		}
	}
	return nil
}

func newInput(info TensorInfo, shape []int64) (*slot, error) {
	if err := checkShape(info, shape); err != nil {
		return nil, err
	}
	sl := &slot{info: info, shape: slices.Clone(shape)}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	var err error
	switch info.Type {
	case Float32:
		sl.f32 = make([]float32, n)
		if len(shape) == 0 {
			return sl, nil // scalars get a fresh runtime value at each Run, see refreshScalar
		}
		sl.value, err = ort.NewTensor(ort.Shape(shape), sl.f32)
	case Float16:
		sl.f32 = make([]float32, n)
		sl.f16 = make([]byte, 2*n)
		if len(shape) == 0 {
			return nil, fmt.Errorf("input %s: float16 scalars are not supported", info)
		}
		sl.value, err = ort.NewCustomDataTensor(ort.Shape(shape), sl.f16, ort.TensorElementDataTypeFloat16)
	case Int64:
		sl.i64 = make([]int64, n)
		if len(shape) == 0 {
			return sl, nil
		}
		sl.value, err = ort.NewTensor(ort.Shape(shape), sl.i64)
	case Int32:
		sl.i64 = make([]int64, n)
		sl.i32 = make([]int32, n)
		if len(shape) == 0 {
			return sl, nil
		}
		sl.value, err = ort.NewTensor(ort.Shape(shape), sl.i32)
	default:
		return nil, fmt.Errorf("input %s has element type %s, which fksteer does not convert", info.Name, info.ONNXType)
	}
	if err != nil {
		return nil, fmt.Errorf("allocate input %s: %w", info, err)
	}
	return sl, nil
}

// refreshScalar rebuilds a scalar input's runtime value from the caller's data. onnxruntime_go's
// Scalar.Set does not update the runtime's copy, so scalars are recreated per Run; only some
// exports (an optimum UNet's float32 timestep) have them.
func (sl *slot) refreshScalar() (err error) {
	if sl.value != nil {
		sl.value.Destroy()
		sl.value = nil
	}
	switch sl.info.Type {
	case Float32:
		sl.value, err = ort.NewScalar(sl.f32[0])
	case Int64:
		sl.value, err = ort.NewScalar(sl.i64[0])
	case Int32:
		sl.value, err = ort.NewScalar(int32(sl.i64[0]))
	}
	return err
}

func (c *Call) slot(slots []*slot, kind, name string) (*slot, error) {
	for _, sl := range slots {
		if sl.info.Name == name {
			return sl, nil
		}
	}
	have := make([]string, len(slots))
	for i, sl := range slots {
		have[i] = sl.info.Name
	}
	return nil, &MissingTensorError{Model: c.s.Path, Kind: kind, Name: name, Have: have}
}

// Float32 returns the buffer the caller fills for a float input (declared float32 or float16).
func (c *Call) Float32(input string) ([]float32, error) {
	sl, err := c.slot(c.ins, "input", input)
	if err != nil {
		return nil, err
	}
	if !sl.info.Type.IsFloat() {
		return nil, fmt.Errorf("model %s: input %s is %s; pass it as integers", c.s.Path, sl.info, sl.info.Type)
	}
	return sl.f32, nil
}

// Int64 returns the buffer the caller fills for an integer input (declared int64 or int32).
func (c *Call) Int64(input string) ([]int64, error) {
	sl, err := c.slot(c.ins, "input", input)
	if err != nil {
		return nil, err
	}
	if sl.info.Type.IsFloat() {
		return nil, fmt.Errorf("model %s: input %s is %s; pass it as floats", c.s.Path, sl.info, sl.info.Type)
	}
	return sl.i64, nil
}

// Run converts the inputs to the declared types, runs the model and converts float16 outputs
// back to float32. Cancelling ctx stops a run in progress (through ONNX Runtime's terminate
// flag) and Run then returns ctx's error.
func (c *Call) Run(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.watch(ctx)
	for i, sl := range c.ins {
		switch {
		case len(sl.shape) == 0:
			if err := sl.refreshScalar(); err != nil {
				return fmt.Errorf("model %s: input %s: %w", c.s.Path, sl.info.Name, err)
			}
			c.inVals[i] = sl.value
		case sl.info.Type == Float16:
			EncodeFloat16(sl.f16, sl.f32)
		case sl.info.Type == Int32:
			for j, v := range sl.i64 {
				sl.i32[j] = int32(v)
			}
		}
	}
	start := time.Now()
	err := c.s.sess.RunWithOptions(c.inVals, c.outVals, c.opts)
	c.runTime += time.Since(start)
	c.runs++
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("run model %s%s: %w", c.s.Path, c.s.onProvider(), err)
	}
	for i, sl := range c.outs {
		if sl.value == nil {
			if err := sl.adopt(c.outVals[i]); err != nil {
				return fmt.Errorf("model %s: %w", c.s.Path, err)
			}
		}
		if sl.info.Type == Float16 {
			DecodeFloat16(sl.f32, sl.f16)
		} else if sl.info.Type == Int32 {
			for j, v := range sl.i32 {
				sl.i64[j] = int64(v)
			}
		}
	}
	return nil
}

// watch arranges for ctx's cancellation to terminate a run in progress. Contexts rarely change
// between the runs of one Call, so the hook is registered once per context, not per Run.
func (c *Call) watch(ctx context.Context) {
	if ctx == c.ctx {
		return
	}
	if c.stop != nil {
		c.unwatch()
		c.opts.UnsetTerminate()
	}
	c.ctx = ctx
	if ctx.Done() != nil {
		opts, done := c.opts, make(chan struct{})
		c.hookDone = done
		c.stop = context.AfterFunc(ctx, func() {
			defer close(done)
			opts.Terminate()
		})
	}
}

// unwatch removes the cancellation hook and, if it has already started, waits for it: it uses
// the run options, which Close is about to free (a Terminate on freed options crashed a batch
// that stopped early) and which a new context's runs must find unterminated.
func (c *Call) unwatch() {
	if !c.stop() {
		<-c.hookDone
	}
	c.stop, c.hookDone = nil, nil
}

// adopt keeps the output value ONNX Runtime allocated at the first Run, so later Runs write into
// the same memory.
func (sl *slot) adopt(v ort.Value) error {
	sl.value = v
	sl.shape = slices.Clone([]int64(v.GetShape()))
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		sl.f32 = t.GetData()
	case *ort.Tensor[int64]:
		sl.i64 = t.GetData()
	case *ort.Tensor[int32]:
		sl.i32 = t.GetData()
		sl.i64 = make([]int64, len(sl.i32))
	case *ort.CustomDataTensor:
		if sl.info.Type != Float16 {
			return fmt.Errorf("output %s: unexpected runtime type %T", sl.info, v)
		}
		sl.f16 = t.GetData()
		sl.f32 = make([]float32, len(sl.f16)/2)
	default:
		return fmt.Errorf("output %s: unexpected runtime type %T", sl.info, v)
	}
	return nil
}

// allocFloat16Output sizes a float16 output: as the caller gave it, or with its fixed
// dimensions as declared and its dynamic ones from the first input of the same rank that agrees
// with every fixed one (a denoiser's output has its sample input's shape).
func (sl *slot) allocFloat16Output(ins []*slot, given []int64) error {
	shape := slices.Clone(sl.info.Dims)
	if given != nil {
		if err := checkShape(sl.info, given); err != nil {
			return fmt.Errorf("output shape: %w", err)
		}
		shape = slices.Clone(given)
	} else if slices.Contains(shape, -1) {
		var from *slot
		for _, in := range ins {
			if len(in.shape) != len(shape) {
				continue
			}
			ok := true
			for d, v := range shape {
				ok = ok && (v < 0 || v == in.shape[d])
			}
			if ok {
				from = in
				break
			}
		}
		if from == nil {
			return fmt.Errorf("float16 output %s has dynamic dimensions that no input of the same rank determines; give its shape to NewCall", sl.info)
		}
		for d, v := range shape {
			if v < 0 {
				shape[d] = from.shape[d]
			}
		}
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	sl.shape = shape
	sl.f16 = make([]byte, 2*n)
	sl.f32 = make([]float32, n)
	v, err := ort.NewCustomDataTensor(ort.Shape(shape), sl.f16, ort.TensorElementDataTypeFloat16)
	if err != nil {
		return fmt.Errorf("allocate output %s: %w", sl.info, err)
	}
	sl.value = v
	return nil
}

// Output returns a float output's values (float16 outputs converted) and its shape. The slice is
// owned by the Call and overwritten by the next Run.
func (c *Call) Output(name string) ([]float32, []int64, error) {
	sl, err := c.slot(c.outs, "output", name)
	if err != nil {
		return nil, nil, err
	}
	if sl.value == nil {
		return nil, nil, fmt.Errorf("model %s: output %s read before the first Run", c.s.Path, name)
	}
	if !sl.info.Type.IsFloat() {
		return nil, nil, fmt.Errorf("model %s: output %s is %s, not a float", c.s.Path, sl.info, sl.info.Type)
	}
	return sl.f32, sl.shape, nil
}

// OutputInt64 returns an integer output's values and shape, like [Call.Output].
func (c *Call) OutputInt64(name string) ([]int64, []int64, error) {
	sl, err := c.slot(c.outs, "output", name)
	if err != nil {
		return nil, nil, err
	}
	if sl.value == nil || sl.info.Type.IsFloat() {
		return nil, nil, fmt.Errorf("model %s: output %s is not an integer output that has run", c.s.Path, sl.info)
	}
	return sl.i64, sl.shape, nil
}

// RunStats reports how many Runs the Call made and the wall time spent inside ONNX Runtime.
func (c *Call) RunStats() (runs int, inRuntime time.Duration) { return c.runs, c.runTime }

// Close releases the Call's runtime values. It is safe to call more than once.
func (c *Call) Close() error {
	if c.stop != nil {
		c.unwatch()
	}
	for _, sl := range append(c.ins, c.outs...) {
		if sl.value != nil {
			sl.value.Destroy()
			sl.value = nil
		}
	}
	c.ins, c.outs = nil, nil
	if c.opts != nil {
		c.opts.Destroy()
		c.opts = nil
	}
	return nil
}
