package pipelines

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/schedule"
)

// GuidedCall is one prepared call of a pipeline's denoiser for a fixed number of rows, with
// whatever the pipeline keeps beside it (its input buffers), as a [Guided] pool holds it.
type GuidedCall interface {
	models.Prepared
	// Sample is the call's input buffer for the states, which Predict fills: the n states once,
	// or, when guided, into both halves of the 2n rows.
	Sample() []float32
	// Fill writes the model's other inputs for n states at level lvl. When guided, the call has
	// 2n rows [unconditional; conditional], and rows [0, n) get c's null side. guidance is for
	// models that take it as an input (LCM); others ignore it.
	Fill(n int, lvl schedule.Level, c Cond, guidance float64, guided bool)
	// Call is the prepared call Sample and Fill write into.
	Call() *models.Call
}

// Guided is the part of Predict every pipeline shares, the classifier-free-guidance shell: it
// takes a prepared call for the batch from Calls (2n rows [unconditional; conditional] when
// guided, so both predictions come from one model call), has the pipeline fill it, runs it,
// checks the output's length and that every value is finite, combines the two halves with
// [CombineGuidance] and converts the prediction with [ToX0Eps]. It counts every call for the
// pipeline's Stats and for the run's.
//
// Set the exported fields before the first Predict; Guided is then safe for concurrent use.
type Guided[C GuidedCall] struct {
	// Model names the model in errors; Output is the output tensor Predict reads.
	Model, Output string
	// Prediction is what the output means.
	Prediction Prediction
	// Size is the number of values of one state.
	Size int
	// Prepare makes a call of rows rows, when Calls has none idle.
	Prepare func(rows int) (C, error)
	// Rescale, if set, adjusts the guided prediction g after the halves are combined, given the
	// conditional half c (Stable Diffusion's guidance rescale).
	Rescale func(g, c []float32)
	// Calls keeps the prepared calls by row count, reused across steps and goroutines; the
	// pipeline closes it when it closes.
	Calls models.CallPool[int, C]

	calls, nanos atomic.Int64
}

// Predict is [Pipeline.Predict] for a pipeline whose caller has decided whether to guide: with
// guided, one call of 2n rows whose halves u and c are combined as u + guidance*(c - u);
// without, one call of n rows. A model error, an output of the wrong length or a NaN or Inf
// in it is returned, and x0 and eps are then undefined.
func (g *Guided[C]) Predict(ctx context.Context, st *Stats, x []float32, n int, lvl schedule.Level, c Cond, guidance float64, guided bool, x0, eps []float32) error {
	size := g.Size
	if len(x) != n*size || len(x0) != n*size || len(eps) != n*size {
		return fmt.Errorf("predict: buffers hold %d, %d and %d values, want %d (n=%d)", len(x), len(x0), len(eps), n*size, n)
	}
	rows := n
	if guided {
		rows = 2 * n
	}
	gc, err := g.Calls.Get(rows, func() (C, error) { return g.Prepare(rows) })
	if err != nil {
		return err
	}
	defer g.Calls.Put(rows, gc)
	sample := gc.Sample()
	copy(sample, x)
	if guided {
		copy(sample[len(x):], x)
	}
	gc.Fill(n, lvl, c, guidance, guided)
	call := gc.Call()
	start := time.Now()
	if err := call.Run(ctx); err != nil {
		return err
	}
	elapsed := time.Since(start)
	g.nanos.Add(int64(elapsed))
	g.calls.Add(1)
	st.AddCall(elapsed)
	out, _, err := call.Output(g.Output)
	if err != nil {
		return err
	}
	if len(out) != rows*size {
		return fmt.Errorf("model %s: output %s has %d values, want %d (is the sample shape right?)", g.Model, g.Output, len(out), rows*size)
	}
	if err := CheckFinite(g.Model, lvl, out); err != nil {
		return err
	}
	if guided {
		// Rows [0, n) are unconditional, so one output split yields u and c.
		CombineGuidance(x0, out, guidance)
		if g.Rescale != nil {
			g.Rescale(x0, out[n*size:])
		}
		out = x0
	}
	ToX0Eps(g.Prediction, lvl, x, out, x0, eps)
	return nil
}

// Stats reports the calls Predict made over g's life and the time spent inside ONNX Runtime.
func (g *Guided[C]) Stats() Stats {
	return Stats{ModelCalls: int(g.calls.Load()), ModelTime: time.Duration(g.nanos.Load())}
}
