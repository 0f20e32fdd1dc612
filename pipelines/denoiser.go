package pipelines

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/fksteer/fksteer/internal/filehash"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/schedule"
)

// VectorEncoder turns a prompt into one row of vector conditioning. Encode("") is the
// unconditional row used for guidance.
type VectorEncoder interface {
	Encode(ctx context.Context, prompt string) ([]float32, error)
	// Width is the length of every row Encode returns.
	Width() int
}

// Denoiser is the pipeline of a single-file pixel-space denoiser described by a [Manifest].
type Denoiser struct {
	info     Info
	m        *Manifest
	pred     Prediction
	sess     *models.Session
	timeInfo models.TensorInfo
	condInfo models.TensorInfo
	enc      VectorEncoder

	guided Guided[*batchCall]
}

// batchCall is one prepared model call for a fixed number of rows, with its input buffers.
type batchCall struct {
	d      *Denoiser
	c      *models.Call
	sample []float32
	timeF  []float32
	timeI  []int64
	condF  []float32
	condI  []int64
}

// Close releases the prepared call.
func (bc *batchCall) Close() error { return bc.c.Close() }

// Call is the prepared call.
func (bc *batchCall) Call() *models.Call { return bc.c }

// Sample is the states' input buffer.
func (bc *batchCall) Sample() []float32 { return bc.sample }

// Fill writes the time and the conditioning; see [GuidedCall].
func (bc *batchCall) Fill(n int, lvl schedule.Level, c Cond, _ float64, guided bool) {
	for i := range bc.timeF {
		bc.timeF[i] = float32(lvl.Time)
	}
	for i := range bc.timeI {
		bc.timeI[i] = int64(math.Round(lvl.Time))
	}
	bc.d.fillCond(bc, c, n, guided)
}

// OpenManifest loads the manifest at path and the model it names.
func OpenManifest(path string, opts ...models.Option) (*Denoiser, error) {
	m, err := LoadManifest(path)
	if err != nil {
		return nil, err
	}
	var enc VectorEncoder
	if CondKind(m.Conditioning.Kind) == VectorCond {
		if enc, err = builtinEncoder(m.Conditioning.Encoder); err != nil {
			return nil, fmt.Errorf("model manifest %s: %w", path, err)
		}
	}
	d, err := NewDenoiser(m, enc, opts...)
	if err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", path, err)
	}
	return d, nil
}

// NewDenoiser opens the model of a validated manifest. enc is required for text conditioning.
// Every tensor the manifest names is checked against the model's own metadata.
func NewDenoiser(m *Manifest, enc VectorEncoder, opts ...models.Option) (_ *Denoiser, err error) {
	path := m.ModelPath()
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			sess.Close()
		}
	}()
	hash, _, err := filehash.SHA256(path)
	if err != nil {
		return nil, fmt.Errorf("hash model %s: %w", path, err)
	}
	d := &Denoiser{m: m, sess: sess, enc: enc}
	d.pred, _ = ParsePrediction(m.Prediction)
	c, h, w := m.Sample.Shape[0], m.Sample.Shape[1], m.Sample.Shape[2]
	name := m.Name
	if name == "" {
		name = path
	}
	d.info = Info{
		Name: name, Path: path, Hash: hash,
		Channels: c, Height: h, Width: w,
		ImageChannels: c, ImageHeight: h, ImageWidth: w,
		Prediction: d.pred, Conditioning: CondKind(m.Conditioning.Kind), Defaults: m.Defaults,
	}
	if d.info.Defaults.Steps == 0 {
		d.info.Defaults.Steps = 50
	}
	if d.info.Conditioning == ClassCond {
		d.info.Classes, d.info.NullClass = m.Conditioning.Classes, *m.Conditioning.NullClass
	}
	if err := d.checkTensors(); err != nil {
		return nil, err
	}
	g := &d.guided
	g.Model, g.Output, g.Prediction, g.Size, g.Prepare = path, m.Output, d.pred, d.info.Len(), d.newBatchCall
	return d, nil
}

func (d *Denoiser) checkTensors() error {
	m := d.m
	sample, err := d.sess.RequireInput(m.Inputs.Sample)
	if err != nil {
		return err
	}
	want := []int64{-1, int64(m.Sample.Shape[0]), int64(m.Sample.Shape[1]), int64(m.Sample.Shape[2])}
	if len(sample.Dims) != 4 || !sample.Type.IsFloat() {
		return fmt.Errorf("input %s is %s; the manifest's sample.shape %v needs a float [batch, C, H, W] input", m.Inputs.Sample, sample, m.Sample.Shape)
	}
	for i := 1; i < 4; i++ {
		if sample.Dims[i] >= 0 && sample.Dims[i] != want[i] {
			return fmt.Errorf("input %s is %s, but the manifest's sample.shape says %v", m.Inputs.Sample, sample, m.Sample.Shape)
		}
	}
	if d.timeInfo, err = d.sess.RequireInput(m.Inputs.Time); err != nil {
		return err
	}
	if len(d.timeInfo.Dims) > 1 {
		return fmt.Errorf("time input %s has rank %d; fksteer passes time as a scalar, [1] or [batch]", d.timeInfo, len(d.timeInfo.Dims))
	}
	out, err := d.sess.RequireOutput(m.Output)
	if err != nil {
		return err
	}
	if !out.Type.IsFloat() {
		return fmt.Errorf("output %s is not a float tensor", out)
	}
	switch d.info.Conditioning {
	case Unconditioned:
		if len(d.sess.Inputs) != 2 {
			return fmt.Errorf("the manifest says the model is unconditioned, but it has inputs %v: name the conditioning input in inputs.cond", d.sess.Inputs)
		}
	case ClassCond:
		if d.condInfo, err = d.sess.RequireInput(m.Inputs.Cond); err != nil {
			return err
		}
		if d.condInfo.Type.IsFloat() || len(d.condInfo.Dims) != 1 {
			return fmt.Errorf("class input %s must be an integer [batch] tensor", d.condInfo)
		}
	case VectorCond:
		if d.condInfo, err = d.sess.RequireInput(m.Inputs.Cond); err != nil {
			return err
		}
		if !d.condInfo.Type.IsFloat() || len(d.condInfo.Dims) != 2 || (d.condInfo.Dims[1] >= 0 && int(d.condInfo.Dims[1]) != d.enc.Width()) {
			return fmt.Errorf("conditioning input %s must be a float [batch, %d] tensor for encoder %s", d.condInfo, d.enc.Width(), m.Conditioning.Encoder)
		}
	}
	return nil
}

// Info describes the model.
func (d *Denoiser) Info() Info { return d.info }

// Schedule returns steps+1 levels. Continuous-time models walk the rectified-flow path
// t = 1 .. 0 (shifted if the manifest says so) and see t in their own convention (noise end,
// scale); discrete-time models use the manifest's beta schedule and timestep spacing.
func (d *Denoiser) Schedule(steps int) ([]schedule.Level, error) {
	if steps <= 0 {
		return nil, fmt.Errorf("steps must be positive (got %d)", steps)
	}
	if d.m.Time.Kind == "discrete" {
		disc, err := d.m.discrete()
		if err != nil {
			return nil, err
		}
		return disc.Levels(steps)
	}
	levels, err := schedule.Flow{Shift: d.m.Time.Shift}.Levels(steps)
	if err != nil {
		return nil, err
	}
	for i := range levels {
		t := levels[i].Sigma
		if *d.m.Time.Noise == 0 {
			t = 1 - t
		}
		levels[i].Time = t * d.m.Time.Scale
	}
	return levels, nil
}

// Condition reads the class from the prompt (or opts.Class) for class-conditional models, or
// encodes the prompt for vector-conditioned ones. An empty prompt means unconditional.
func (d *Denoiser) Condition(ctx context.Context, _ *Stats, prompt string, opts CondOptions) (Cond, error) {
	c := Cond{Kind: d.info.Conditioning}
	switch c.Kind {
	case ClassCond:
		c.Null = *d.m.Conditioning.NullClass
		class, err := classFromPrompt(prompt, d.m.Conditioning.Classes, c.Null, opts.Class)
		if err != nil {
			return c, err
		}
		c.Class = class
	case VectorCond:
		var err error
		if c.Vector, err = d.enc.Encode(ctx, prompt); err != nil {
			return c, err
		}
		if c.NullVector, err = d.enc.Encode(ctx, ""); err != nil {
			return c, err
		}
	}
	return c, nil
}

// classFromPrompt picks the class whose name is a word of the prompt; an override wins, and an
// empty prompt is the null class.
func classFromPrompt(prompt string, classes []string, null int64, override *int64) (int64, error) {
	if override != nil {
		if *override != null && (*override < 0 || *override >= int64(len(classes))) {
			return 0, fmt.Errorf("class %d is out of range (classes 0..%d, %d = unconditional)", *override, len(classes)-1, null)
		}
		return *override, nil
	}
	words := strings.FieldsFunc(strings.ToLower(prompt), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	})
	if len(words) == 0 {
		return null, nil
	}
	found := int64(-1)
	for _, w := range words {
		for id, name := range classes {
			if strings.ToLower(name) == w {
				if found >= 0 && found != int64(id) {
					return 0, fmt.Errorf("prompt %q names two classes (%s and %s); name one, or pass --class", prompt, classes[found], name)
				}
				found = int64(id)
			}
		}
	}
	if found < 0 {
		return 0, fmt.Errorf("prompt %q names none of the model's classes (%s); name one, pass --class, or give an empty prompt for an unconditional sample", prompt, strings.Join(classes, ", "))
	}
	return found, nil
}

// Predict runs the denoiser on n states; see [Pipeline].
func (d *Denoiser) Predict(ctx context.Context, st *Stats, x []float32, n int, lvl schedule.Level, c Cond, guidance float64, x0, eps []float32) error {
	return d.guided.Predict(ctx, st, x, n, lvl, c, guidance, guidance > 1 && c.Guidable(), x0, eps)
}

func (d *Denoiser) fillCond(bc *batchCall, c Cond, n int, guided bool) {
	switch d.info.Conditioning {
	case ClassCond:
		class := c.Class
		for i := range bc.condI {
			if guided && i < n {
				bc.condI[i] = c.Null
			} else {
				bc.condI[i] = class
			}
		}
	case VectorCond:
		w := d.enc.Width()
		for i := 0; i*w < len(bc.condF); i++ {
			row := c.Vector
			if guided && i < n {
				row = c.NullVector
			}
			copy(bc.condF[i*w:(i+1)*w], row)
		}
	}
}

func (d *Denoiser) newBatchCall(rows int) (*batchCall, error) {
	m := d.m
	r := int64(rows)
	shapes := models.Shapes{
		m.Inputs.Sample: {r, int64(m.Sample.Shape[0]), int64(m.Sample.Shape[1]), int64(m.Sample.Shape[2])},
	}
	switch {
	case len(d.timeInfo.Dims) == 0:
		shapes[m.Inputs.Time] = []int64{}
	case d.timeInfo.Dims[0] == 1:
		shapes[m.Inputs.Time] = []int64{1}
	default:
		shapes[m.Inputs.Time] = []int64{r}
	}
	switch d.info.Conditioning {
	case ClassCond:
		shapes[m.Inputs.Cond] = []int64{r}
	case VectorCond:
		shapes[m.Inputs.Cond] = []int64{r, int64(d.enc.Width())}
	}
	c, err := d.sess.NewCall(shapes)
	if err != nil {
		return nil, err
	}
	bc := &batchCall{d: d, c: c}
	bc.sample, err = c.Float32(m.Inputs.Sample)
	if err == nil {
		if d.timeInfo.Type.IsFloat() {
			bc.timeF, err = c.Float32(m.Inputs.Time)
		} else {
			bc.timeI, err = c.Int64(m.Inputs.Time)
		}
	}
	if err == nil {
		switch d.info.Conditioning {
		case ClassCond:
			bc.condI, err = c.Int64(m.Inputs.Cond)
		case VectorCond:
			bc.condF, err = c.Float32(m.Inputs.Cond)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return bc, nil
}

// Decode maps clean states from the manifest's value range to [0, 1], clipping.
func (d *Denoiser) Decode(_ context.Context, _ *Stats, x []float32, n int, dst pixels.Images) error {
	return decodeRange(d.info, d.m.Sample.Range[0], d.m.Sample.Range[1], x, n, dst)
}

func decodeRange(info Info, lo, hi float64, x []float32, n int, dst pixels.Images) error {
	if dst.N != n || dst.C != info.ImageChannels || dst.H != info.ImageHeight || dst.W != info.ImageWidth || len(x) != n*info.Len() {
		return fmt.Errorf("decode: %d states into images %dx%dx%dx%d, want %dx%dx%dx%d", n, dst.N, dst.C, dst.H, dst.W, n, info.ImageChannels, info.ImageHeight, info.ImageWidth)
	}
	scale := 1 / (hi - lo)
	for i, v := range x {
		dst.Pix[i] = float32(min(1, max(0, (float64(v)-lo)*scale)))
	}
	return nil
}

// Stats reports model calls and time inside ONNX Runtime.
func (d *Denoiser) Stats() Stats { return d.guided.Stats() }

// Close releases the prepared calls and the session. It must not run while a Predict does.
func (d *Denoiser) Close() error {
	return errors.Join(d.guided.Calls.Close(), d.sess.Close())
}
