package sd

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
)

// vae holds the VAE decoder, the optional preview decoder and the VAE encoder, which is opened
// on first use because only image-to-image needs it.
type vae struct {
	dir     string
	opts    []models.Option
	dec     *decoder
	preview *decoder
	// scaling and shift map VAE latents to UNet latents: unet = (vae - shift) * scaling.
	scaling, shift float64
	// factor is how many pixels one latent covers per side; channels the latent channels.
	factor, channels int

	encOnce sync.Once
	enc     *models.Session
	encErr  error
	encoder models.CallPool[int, *models.Call]
}

// decoder is one latents-to-images model with its prepared calls by row count.
type decoder struct {
	name    string
	sess    *models.Session
	in, out models.TensorInfo
	calls   models.CallPool[int, *models.Call]
}

// Scaling factors of the VAEs of Stable Diffusion 1.x/2.x and of SDXL, for exports that omit
// vae_decoder/config.json.
const (
	sdScaling   = 0.18215
	sdxlScaling = 0.13025
)

func openVAE(dir, preview string, fam Family, log *slog.Logger, opts []models.Option) (*vae, error) {
	p, err := requirePart(dir, "vae_decoder")
	if err != nil {
		return nil, err
	}
	var cfg vaeConfig
	if err := p.readConfig(&cfg, true); err != nil {
		return nil, fmt.Errorf("model folder %s: %w", dir, err)
	}
	if cfg.ScalingFactor == nil {
		// Some exports (ONNX Runtime's sd-turbo among them) ship no VAE config; every SD
		// family's VAE has a known factor.
		f := sdScaling
		if fam == SDXL {
			f = sdxlScaling
		}
		log.Warn("vae_decoder/config.json gives no scaling_factor; using the family's", "model", dir, "scaling_factor", f)
		cfg.ScalingFactor = &f
	}
	if *cfg.ScalingFactor <= 0 {
		return nil, fmt.Errorf("model folder %s: vae_decoder/config.json: scaling_factor %g must be positive (SD 1.x/2.x use 0.18215, SDXL 0.13025)", dir, *cfg.ScalingFactor)
	}
	v := &vae{dir: dir, opts: opts, scaling: *cfg.ScalingFactor, factor: 8, channels: 4}
	if cfg.ShiftFactor != nil {
		v.shift = *cfg.ShiftFactor
	}
	if n := len(cfg.BlockOutChannels); n > 0 {
		v.factor = 1 << (n - 1)
	}
	if cfg.LatentChannels > 0 {
		v.channels = cfg.LatentChannels
	}
	if v.dec, err = openDecoder("vae_decoder", p.model, "latent_sample", opts); err != nil {
		return nil, fmt.Errorf("model folder %s: %w", dir, err)
	}
	if preview != "" {
		if v.preview, err = openDecoder("preview decoder", preview, "", opts); err != nil {
			v.close()
			return nil, err
		}
	}
	return v, nil
}

// openDecoder opens a decoder with input name in (or its only input when in is empty) and
// one float image output.
func openDecoder(name, path, in string, opts []models.Option) (*decoder, error) {
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	d := &decoder{name: name, sess: sess}
	err = func() error {
		if in == "" {
			if len(sess.Inputs) != 1 {
				return fmt.Errorf("%s %s must have one input (latents), it has %v", name, path, sess.Inputs)
			}
			in = sess.Inputs[0].Name
		}
		if d.in, err = sess.RequireInput(in); err != nil {
			return err
		}
		if len(sess.Inputs) != 1 || len(d.in.Dims) != 4 || !d.in.Type.IsFloat() {
			return fmt.Errorf("%s %s must take one float [batch, channels, height, width] input, it has %v", name, path, sess.Inputs)
		}
		if len(sess.Outputs) != 1 || len(sess.Outputs[0].Dims) != 4 || !sess.Outputs[0].Type.IsFloat() {
			return fmt.Errorf("%s %s must give one float [batch, 3, height, width] output, it has %v", name, path, sess.Outputs)
		}
		d.out = sess.Outputs[0]
		return nil
	}()
	if err != nil {
		sess.Close()
		return nil, err
	}
	return d, nil
}

// checkSize checks the decoders' fixed dimensions against the pipeline's sizes.
func (v *vae) checkSize(info pipelines.Info) error {
	for _, d := range []*decoder{v.dec, v.preview} {
		if d == nil {
			continue
		}
		in := []int64{-1, int64(info.Channels), int64(info.Height), int64(info.Width)}
		out := []int64{-1, 3, int64(info.ImageHeight), int64(info.ImageWidth)}
		for i := 1; i < 4; i++ {
			if x := d.in.Dims[i]; x >= 0 && x != in[i] {
				return fmt.Errorf("%s input %s does not take latents of %dx%dx%d", d.name, d.in, info.Channels, info.Height, info.Width)
			}
			if x := d.out.Dims[i]; x >= 0 && x != out[i] {
				return fmt.Errorf("%s output %s does not make images of 3x%dx%d", d.name, d.out, info.ImageHeight, info.ImageWidth)
			}
		}
	}
	return nil
}

// decode runs the VAE decoder (or the preview decoder, when preview is set and there is one)
// on n latents in one batch and writes images in [0, 1] to dst.
func (v *vae) decode(ctx context.Context, st *pipelines.Stats, info pipelines.Info, x []float32, n int, dst pixels.Images, preview bool) error {
	if dst.N != n || dst.C != 3 || dst.H != info.ImageHeight || dst.W != info.ImageWidth || len(x) != n*info.Len() {
		return fmt.Errorf("decode: %d latents into images %dx%dx%dx%d, want %dx3x%dx%d", n, dst.N, dst.C, dst.H, dst.W, n, info.ImageHeight, info.ImageWidth)
	}
	d, scale, shift := v.dec, 1/v.scaling, v.shift
	// The VAE writes [-1, 1]; TAESD-style preview decoders write [0, 1] from UNet latents.
	outScale, outShift := 0.5, 0.5
	if preview && v.preview != nil {
		d, scale, shift, outScale, outShift = v.preview, 1, 0, 1, 0
	}
	c, err := d.acquire(n, []int64{int64(n), int64(info.Channels), int64(info.Height), int64(info.Width)},
		[]int64{int64(n), 3, int64(info.ImageHeight), int64(info.ImageWidth)})
	if err != nil {
		return err
	}
	defer d.release(n, c)
	in, err := c.Float32(d.in.Name)
	if err != nil {
		return err
	}
	for i, xi := range x {
		in[i] = float32(float64(xi)*scale + shift)
	}
	start := time.Now()
	if err := c.Run(ctx); err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	st.AddAux(time.Since(start))
	out, shape, err := c.Output(d.out.Name)
	if err != nil {
		return err
	}
	if len(out) != len(dst.Pix) {
		return fmt.Errorf("%s: output of shape %v, want [%d, 3, %d, %d]", d.name, shape, n, info.ImageHeight, info.ImageWidth)
	}
	// Millions of pixels per decode: float32 and one range test per pixel on the common path.
	a, b := float32(outScale), float32(outShift)
	for i, o := range out {
		v := o*a + b
		switch {
		case v >= 0 && v <= 1:
		case v < 0 && !math.IsInf(float64(v), -1):
			v = 0
		case v > 1 && !math.IsInf(float64(v), 1):
			v = 1
		default: // NaN or infinite
			return fmt.Errorf("%s returned %v at element %d: the export is broken or the latents are out of range (run with --provider cpu to rule out the accelerator)", d.name, o, i)
		}
		dst.Pix[i] = v
	}
	return nil
}

// acquire returns a prepared call for rows latents of shape, whose images have shape out.
func (d *decoder) acquire(rows int, shape, out []int64) (*models.Call, error) {
	return d.calls.Get(rows, func() (*models.Call, error) {
		c, err := d.sess.NewCall(withOutputShapes(d.sess, models.Shapes{d.in.Name: shape}, out...))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
		return c, nil
	})
}

func (d *decoder) release(rows int, c *models.Call) { d.calls.Put(rows, c) }

func (d *decoder) close() {
	d.calls.Close()
	d.sess.Close()
}

// encode runs the VAE encoder on images in [0, 1] and writes UNet latents to dst. Exports give
// either a latent sample (diffusers' script) or the latent distribution's parameters, mean then
// log-variance (optimum); fksteer takes the mean, so image-to-image is deterministic.
func (v *vae) encode(ctx context.Context, st *pipelines.Stats, info pipelines.Info, imgs pixels.Images, dst []float32) error {
	if imgs.C != 3 || imgs.H != info.ImageHeight || imgs.W != info.ImageWidth || len(dst) != imgs.N*info.Len() {
		return fmt.Errorf("encode: images %dx%dx%dx%d into %d values, want %dx3x%dx%d into %d", imgs.N, imgs.C, imgs.H, imgs.W, len(dst), imgs.N, info.ImageHeight, info.ImageWidth, imgs.N*info.Len())
	}
	v.encOnce.Do(v.openEncoder)
	if v.encErr != nil {
		return v.encErr
	}
	n := imgs.N
	c, err := v.encoder.Get(n, func() (*models.Call, error) {
		shapes := models.Shapes{"sample": {int64(n), 3, int64(info.ImageHeight), int64(info.ImageWidth)}}
		c, err := v.enc.NewCall(withOutputShapes(v.enc, shapes, int64(n), int64(info.Channels), int64(info.Height), int64(info.Width)))
		if err != nil {
			return nil, fmt.Errorf("vae_encoder: %w", err)
		}
		return c, nil
	})
	if err != nil {
		return err
	}
	defer v.encoder.Put(n, c)
	in, err := c.Float32("sample")
	if err != nil {
		return err
	}
	for i, p := range imgs.Pix {
		in[i] = 2*p - 1
	}
	start := time.Now()
	if err := c.Run(ctx); err != nil {
		return fmt.Errorf("vae_encoder: %w", err)
	}
	st.AddAux(time.Since(start))
	out, shape, err := c.Output(v.enc.Outputs[0].Name)
	if err != nil {
		return err
	}
	per := info.Len()
	if len(shape) != 4 || shape[0] != int64(n) || shape[2] != int64(info.Height) || shape[3] != int64(info.Width) ||
		(shape[1] != int64(info.Channels) && shape[1] != 2*int64(info.Channels)) {
		return fmt.Errorf("vae_encoder: output %s has shape %v, want [%d, %d or %d, %d, %d]", v.enc.Outputs[0].Name, shape, n, info.Channels, 2*info.Channels, info.Height, info.Width)
	}
	stride := int(shape[1]) * info.Height * info.Width
	for i := range n {
		mean := out[i*stride : i*stride+per]
		for j, m := range mean {
			dst[i*per+j] = float32((float64(m) - v.shift) * v.scaling)
		}
	}
	return nil
}

func (v *vae) openEncoder() {
	p, err := requirePart(v.dir, "vae_encoder")
	if err != nil {
		v.encErr = fmt.Errorf("image-to-image needs the VAE encoder: %w", err)
		return
	}
	sess, err := models.Open(p.model, v.opts...)
	if err != nil {
		v.encErr = fmt.Errorf("load vae_encoder: %w", err)
		return
	}
	in, ok := sess.Input("sample")
	if !ok || len(sess.Inputs) != 1 || len(in.Dims) != 4 || len(sess.Outputs) < 1 || !sess.Outputs[0].Type.IsFloat() {
		sess.Close()
		v.encErr = fmt.Errorf("model folder %s: vae_encoder must take one float input \"sample\" [batch, 3, height, width] and give latents first; it has inputs %v, outputs %v", v.dir, sess.Inputs, sess.Outputs)
		return
	}
	v.enc = sess
}

func (v *vae) close() {
	if v.dec != nil {
		v.dec.close()
	}
	if v.preview != nil {
		v.preview.close()
	}
	v.encoder.Close()
	if v.enc != nil {
		v.enc.Close()
	}
}
