package sd

import (
	"fmt"
	"math"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/schedule"
)

// UNet tensor names, as every export style writes them.
const (
	inSample    = "sample"
	inTimestep  = "timestep"
	inHidden    = "encoder_hidden_states"
	inTextEmbed = "text_embeds"   // SDXL
	inTimeIDs   = "time_ids"      // SDXL
	inTimeCond  = "timestep_cond" // LCM
	outSample   = "out_sample"
)

// unet is the UNet session, what its metadata says, and prepared calls by row count.
type unet struct {
	sess   *models.Session
	config unetConfig
	sample models.TensorInfo
	time   models.TensorInfo
	out    string
	// ehsWidth, pooledWidth and condWidth are the feature sizes of encoder_hidden_states,
	// text_embeds and timestep_cond (-1 if dynamic, 0 if absent).
	ehsWidth, pooledWidth, condWidth int64
	// timeIDs are SDXL's micro-conditioning: original size, crop top-left, target size.
	timeIDs []float32
	// latent is the latents' [channels, height, width] and seq the text encoders' length,
	// set by Open once the image size is known.
	latent [3]int64
	seq    int64

	// guided runs the UNet for Predict, with its prepared calls by row count.
	guided pipelines.Guided[*unetCall]
}

func openUNet(dir string, fam Family, opts []models.Option) (*unet, error) {
	p, err := requirePart(dir, "unet")
	if err != nil {
		return nil, err
	}
	u := &unet{}
	if err := p.readConfig(&u.config, true); err != nil {
		return nil, err
	}
	if u.sess, err = models.Open(p.model, opts...); err != nil {
		return nil, fmt.Errorf("load unet: %w", err)
	}
	if err := u.check(fam); err != nil {
		u.sess.Close()
		return nil, fmt.Errorf("model folder %s: unet: %w", dir, err)
	}
	// Open sets the prediction and the state size once the image size is known.
	u.guided.Model, u.guided.Output, u.guided.Prepare = dir+"/unet", u.out, u.newCall
	return u, nil
}

// check reads the UNet's inputs from its metadata: which exist says what kind of UNet it is.
func (u *unet) check(fam Family) error {
	var err error
	if u.sample, err = u.sess.RequireInput(inSample); err != nil {
		return err
	}
	if len(u.sample.Dims) != 4 || !u.sample.Type.IsFloat() {
		return fmt.Errorf("input %s must be a float [batch, channels, height, width] tensor", u.sample)
	}
	if u.time, err = u.sess.RequireInput(inTimestep); err != nil {
		return err
	}
	if len(u.time.Dims) > 1 {
		return fmt.Errorf("input %s has rank %d; fksteer passes the timestep as a scalar, [1] or [batch]", u.time, len(u.time.Dims))
	}
	ehs, err := u.sess.RequireInput(inHidden)
	if err != nil {
		return err
	}
	if len(ehs.Dims) != 3 || !ehs.Type.IsFloat() {
		return fmt.Errorf("input %s must be a float [batch, sequence, features] tensor", ehs)
	}
	u.ehsWidth = ehs.Dims[2]
	known := map[string]bool{inSample: true, inTimestep: true, inHidden: true}
	if fam == SDXL {
		te, err := u.sess.RequireInput(inTextEmbed)
		if err != nil {
			return fmt.Errorf("model_index.json names an SDXL pipeline but %w", err)
		}
		ids, err := u.sess.RequireInput(inTimeIDs)
		if err != nil {
			return fmt.Errorf("model_index.json names an SDXL pipeline but %w", err)
		}
		if len(te.Dims) != 2 || len(ids.Dims) != 2 || (ids.Dims[1] >= 0 && ids.Dims[1] != 6) {
			return fmt.Errorf("SDXL inputs %s and %s must be [batch, features] and [batch, 6]", te, ids)
		}
		u.pooledWidth = te.Dims[1]
		known[inTextEmbed], known[inTimeIDs] = true, true
	}
	if tc, ok := u.sess.Input(inTimeCond); ok {
		if len(tc.Dims) != 2 || tc.Dims[1] < 0 || !tc.Type.IsFloat() {
			return fmt.Errorf("input %s must be a float [batch, embedding] tensor of fixed width", tc)
		}
		u.condWidth = tc.Dims[1]
		known[inTimeCond] = true
	}
	for _, in := range u.sess.Inputs {
		if !known[in.Name] {
			return fmt.Errorf("input %s is not one fksteer knows how to fill (the UNet's inputs are %v); if this is an SDXL export, model_index.json should name StableDiffusionXLPipeline", in, u.sess.Inputs)
		}
	}
	u.out = outSample
	if _, ok := u.sess.Output(outSample); !ok {
		if len(u.sess.Outputs) != 1 {
			return fmt.Errorf("the UNet has no %s output and several others (%v)", outSample, u.sess.Outputs)
		}
		u.out = u.sess.Outputs[0].Name
	}
	return nil
}

// lcm reports whether the UNet is LCM-distilled: it takes the guidance embedding.
func (u *unet) lcm() bool { return u.condWidth > 0 }

// sampleSize is the latent size from unet/config.json, or the sample input's fixed size, or
// 0 when neither says.
func (u *unet) sampleSize() (h, w int, err error) {
	if h, w, err = u.config.size(); err != nil || h > 0 {
		return h, w, err
	}
	return int(max(0, u.sample.Dims[2])), int(max(0, u.sample.Dims[3])), nil
}

// checkSample checks the latent shape against the sample input's fixed dimensions.
func (u *unet) checkSample(info pipelines.Info) error {
	want := []int64{-1, int64(info.Channels), int64(info.Height), int64(info.Width)}
	for i := 1; i < 4; i++ {
		if d := u.sample.Dims[i]; d >= 0 && d != want[i] {
			return fmt.Errorf("the UNet's input %s is fixed, and latents of %dx%dx%d (images %dx%d) do not fit it; pass the --width and --height it was exported for", u.sample, info.Channels, info.Height, info.Width, info.ImageWidth, info.ImageHeight)
		}
	}
	return nil
}

// unetCall is one prepared UNet run for a fixed number of rows, with its input buffers.
type unetCall struct {
	u      *unet
	c      *models.Call
	rows   int
	sample []float32
	timeF  []float32
	timeI  []int64
	hidden []float32
	pooled []float32
	cond   []float32
	// filled records the conditioning the buffers hold, so that steps after the first copy
	// nothing: the identity of the prompt's and the negative's arrays, whether the batch is
	// doubled, and the guidance the LCM embedding was made for. The pointers keep those arrays
	// alive, so a later Cond can never be allocated at the same address and be mistaken for
	// this one.
	filled struct {
		vec, null *float32
		guided    bool
		guidance  float64
	}
}

// Close releases the prepared call.
func (uc *unetCall) Close() error { return uc.c.Close() }

// Call is the prepared call.
func (uc *unetCall) Call() *models.Call { return uc.c }

// Sample is the latents' input buffer.
func (uc *unetCall) Sample() []float32 { return uc.sample }

func (u *unet) newCall(rows int) (*unetCall, error) {
	r := int64(rows)
	shapes := models.Shapes{
		inSample: {r, u.latent[0], u.latent[1], u.latent[2]},
		inHidden: {r, u.seq, u.ehsWidth},
	}
	switch {
	case len(u.time.Dims) == 0:
		shapes[inTimestep] = []int64{}
	case u.time.Dims[0] == 1:
		shapes[inTimestep] = []int64{1}
	default:
		shapes[inTimestep] = []int64{r}
	}
	if u.pooledWidth != 0 {
		shapes[inTextEmbed] = []int64{r, u.pooledWidth}
		shapes[inTimeIDs] = []int64{r, 6}
	}
	if u.condWidth != 0 {
		shapes[inTimeCond] = []int64{r, u.condWidth}
	}
	c, err := u.sess.NewCall(shapes)
	if err != nil {
		return nil, fmt.Errorf("unet: %w", err)
	}
	uc := &unetCall{u: u, c: c, rows: rows}
	uc.filled.guidance = math.NaN() // no embedding yet
	if err := uc.buffers(); err != nil {
		c.Close()
		return nil, fmt.Errorf("unet: %w", err)
	}
	return uc, nil
}

// buffers looks up the call's input buffers and writes the inputs that never change.
func (uc *unetCall) buffers() error {
	u, c := uc.u, uc.c
	var err error
	if uc.sample, err = c.Float32(inSample); err != nil {
		return err
	}
	if u.time.Type.IsFloat() {
		uc.timeF, err = c.Float32(inTimestep)
	} else {
		uc.timeI, err = c.Int64(inTimestep)
	}
	if err != nil {
		return err
	}
	if uc.hidden, err = c.Float32(inHidden); err != nil {
		return err
	}
	if u.pooledWidth != 0 {
		if uc.pooled, err = c.Float32(inTextEmbed); err != nil {
			return err
		}
		ids, err := c.Float32(inTimeIDs)
		if err != nil {
			return err
		}
		for r := range uc.rows {
			copy(ids[r*6:(r+1)*6], u.timeIDs)
		}
	}
	if u.condWidth != 0 {
		if uc.cond, err = c.Float32(inTimeCond); err != nil {
			return err
		}
	}
	return nil
}

func (u *unet) close() {
	u.guided.Calls.Close()
	u.sess.Close()
}

// Fill writes the inputs besides the latents for n rows at level lvl; with guided the batch is
// [negative; prompt] (see [pipelines.GuidedCall]).
func (uc *unetCall) Fill(n int, lvl schedule.Level, c pipelines.Cond, guidance float64, guided bool) {
	// Exports take the timestep as diffusers' pipelines hand it over: as a float, or cut to an
	// integer by numpy's astype (toward zero) for integer inputs.
	for i := range uc.timeF {
		uc.timeF[i] = float32(lvl.Time)
	}
	for i := range uc.timeI {
		uc.timeI[i] = int64(lvl.Time)
	}
	f := &uc.filled
	if f.vec != first(c.Vector) || f.null != first(c.NullVector) || f.guided != guided {
		fillRows(uc.hidden, n, guided, c.NullVector, c.Vector)
		if uc.pooled != nil {
			fillRows(uc.pooled, n, guided, c.NullPooled, c.Pooled)
		}
		f.vec, f.null, f.guided = first(c.Vector), first(c.NullVector), guided
	}
	if uc.cond != nil && f.guidance != guidance {
		w := len(uc.cond) / uc.rows
		guidanceEmbedding(uc.cond[:w], guidance-1)
		for r := 1; r < uc.rows; r++ {
			copy(uc.cond[r*w:(r+1)*w], uc.cond[:w])
		}
		f.guidance = guidance
	}
}

// fillRows writes rows of conditioning: the first n rows null when guided, the rest cond.
func fillRows(dst []float32, n int, guided bool, null, cond []float32) {
	w := len(cond)
	for r := 0; (r+1)*w <= len(dst); r++ {
		src := cond
		if guided && r < n {
			src = null
		}
		copy(dst[r*w:(r+1)*w], src)
	}
}

func first(s []float32) *float32 {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// guidanceEmbedding writes the sinusoidal embedding of guidance weight w that LCM UNets take as
// timestep_cond: diffusers' get_guidance_scale_embedding (Meng et al.'s w-conditioning), with
// w scaled by 1000 like a timestep, sines then cosines, zero-padded to an odd width.
func guidanceEmbedding(dst []float32, w float64) {
	clear(dst)
	half := len(dst) / 2
	if half == 0 {
		return
	}
	// diffusers computes in float32, and the arguments reach thousands of radians, where
	// float32's rounding moves a sine by ~1e-4: each intermediate is rounded as torch rounds it.
	step := float32(math.Log(10000))
	if half > 1 {
		step /= float32(half - 1)
	}
	w32 := float32(w) * 1000
	for i := range half {
		freq := float32(math.Exp(float64(float32(i) * -step)))
		arg := float64(w32 * freq)
		dst[i] = float32(math.Sin(arg))
		dst[half+i] = float32(math.Cos(arg))
	}
}
