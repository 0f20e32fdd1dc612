package sd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/schedule"
)

// Options are the choices a user makes when opening an export.
type Options struct {
	// Scheduler replaces the folder's scheduler (a name [schedule.ParseSchedulerKind] accepts:
	// ddim, ddpm, pndm, euler, euler-a, dpm++2m, lcm, or a diffusers class name), keeping its
	// beta schedule, spacing and prediction type. Empty keeps the folder's.
	Scheduler string
	// Width and Height of the images in pixels, multiples of the VAE's scale factor (8);
	// 0 takes the UNet's sample size times that factor (512 for SD 1.5, 1024 for SDXL).
	Width, Height int
	// GuidanceRescale is diffusers' guidance_rescale phi in [0, 1] (Lin et al. 2023, section
	// 3.4): the guided prediction is rescaled toward the conditional prediction's standard
	// deviation, mixing phi of the rescaled with 1-phi of the plain one. 0 turns it off.
	GuidanceRescale float64
	// PreviewDecoder is a small ONNX decoder (TAESD's taesd_decoder.onnx, for example) used
	// instead of the VAE for the intermediate rewards of steering: one input taking the
	// UNet's latents as they are, one output of images in [0, 1] of the VAE's size.
	PreviewDecoder string
	// Logger receives warnings (a prompt cut at the encoder's 77 tokens); nil means
	// slog.Default().
	Logger *slog.Logger
}

// Pipeline is a Stable Diffusion export ready to sample; see the package documentation. It is
// safe for concurrent use.
type Pipeline struct {
	info   pipelines.Info
	dir    string
	family Family
	sched  schedule.Scheduler
	log    *slog.Logger
	// forceZeros makes an empty negative prompt a zero embedding (SDXL's
	// force_zeros_for_empty_prompt).
	forceZeros bool
	rescale    float64

	text []*textEncoder
	unet *unet
	vae  *vae

	closeOnce sync.Once
}

// Open reads the export in dir. A missing or inconsistent part gets an error that names it.
func Open(dir string, o Options, opts ...models.Option) (_ *Pipeline, err error) {
	idx, err := readIndex(dir)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{dir: dir, family: idx.family, log: o.Logger, rescale: o.GuidanceRescale}
	if p.log == nil {
		p.log = slog.Default()
	}
	if o.GuidanceRescale < 0 || o.GuidanceRescale > 1 {
		return nil, fmt.Errorf("guidance rescale %g must be between 0 and 1", o.GuidanceRescale)
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	// A scheduler fksteer does not reproduce (UniPC, say) is fine when --scheduler replaces it:
	// its beta schedule and prediction type still describe the model.
	p.sched, err = schedule.LoadScheduler(filepath.Join(dir, "scheduler", "scheduler_config.json"))
	if err != nil && (o.Scheduler == "" || !errors.Is(err, schedule.ErrUnsupported)) {
		return nil, fmt.Errorf("model folder %s: %w", dir, err)
	}
	if o.Scheduler != "" {
		kind, err := schedule.ParseSchedulerKind(o.Scheduler)
		if err != nil {
			return nil, err
		}
		p.sched = p.sched.With(kind)
	}
	pred, err := pipelines.ParsePrediction(p.sched.Prediction)
	if err != nil {
		return nil, fmt.Errorf("model folder %s: scheduler_config.json prediction_type: %w", dir, err)
	}

	// Text encoders first: the UNet's conditioning widths are checked against them.
	if p.family == SDXL {
		p.forceZeros = idx.ForceZeros == nil || *idx.ForceZeros
		for _, names := range [][2]string{{"tokenizer", "text_encoder"}, {"tokenizer_2", "text_encoder_2"}} {
			te, err := openTextEncoder(dir, names[0], names[1], true, names[1] == "text_encoder_2", opts)
			if err != nil {
				return nil, err
			}
			p.text = append(p.text, te)
		}
	} else {
		te, err := openTextEncoder(dir, "tokenizer", "text_encoder", false, false, opts)
		if err != nil {
			return nil, err
		}
		p.text = append(p.text, te)
	}
	if p.vae, err = openVAE(dir, o.PreviewDecoder, p.family, p.log, opts); err != nil {
		return nil, err
	}
	if p.unet, err = openUNet(dir, p.family, opts); err != nil {
		return nil, err
	}
	if err := p.checkWidths(); err != nil {
		return nil, fmt.Errorf("model folder %s: %w", dir, err)
	}
	if p.unet.lcm() { // LCM-distilled, whatever model_index.json's class (SDXL-LCM, say)
		p.family = LCM
	}

	h, w, err := p.imageSize(o)
	if err != nil {
		return nil, fmt.Errorf("model folder %s: %w", dir, err)
	}
	f := p.vae.factor
	p.info = pipelines.Info{
		Name: exportName(dir, idx), Path: dir,
		Channels: p.vae.channels, Height: h / f, Width: w / f,
		ImageChannels: 3, ImageHeight: h, ImageWidth: w,
		Prediction: pred, Conditioning: pipelines.VectorCond, Negative: true,
		Defaults: p.defaults(idx),
	}
	u := p.unet
	u.latent = [3]int64{int64(p.info.Channels), int64(p.info.Height), int64(p.info.Width)}
	u.seq = int64(p.text[0].tok.MaxLength())
	if u.ehsWidth < 0 {
		// The UNet leaves it open: the encoders' widths decide, if they all state theirs.
		var sum int64
		for _, te := range p.text {
			if te.width < 0 {
				sum = -1
				break
			}
			sum += te.width
		}
		u.ehsWidth = sum
	}
	if u.pooledWidth < 0 {
		u.pooledWidth = p.text[len(p.text)-1].poolWidth
	}
	if u.ehsWidth < 0 || u.pooledWidth < 0 {
		return nil, fmt.Errorf("model folder %s: the UNet and the text encoders all leave their feature sizes dynamic; fksteer needs one of them fixed", dir)
	}
	p.info.Settings = [][2]string{{"Scheduler", string(p.sched.Kind)}}
	if p.rescale > 0 {
		p.info.Settings = append(p.info.Settings, [2]string{"CFG rescale", fmt.Sprint(p.rescale)})
	}
	u.guided.Prediction, u.guided.Size = pred, p.info.Len()
	if phi, size := p.rescale, p.info.Len(); phi > 0 {
		u.guided.Rescale = func(g, c []float32) { RescaleGuidance(g, c, size, phi) }
	}
	if err := p.unet.checkSample(p.info); err != nil {
		return nil, fmt.Errorf("model folder %s: %w", dir, err)
	}
	if err := p.vae.checkSize(p.info); err != nil {
		return nil, fmt.Errorf("model folder %s: %w", dir, err)
	}
	if p.info.Hash, err = hashExport(dir); err != nil {
		return nil, err
	}
	p.unet.timeIDs = []float32{float32(h), float32(w), 0, 0, float32(h), float32(w)}
	return p, nil
}

// checkWidths checks that the text encoders produce what the UNet takes.
func (p *Pipeline) checkWidths() error {
	var width int64
	for _, te := range p.text {
		if te.width < 0 {
			return nil // dynamic: the first call will tell
		}
		width += te.width
	}
	if u := p.unet.ehsWidth; u >= 0 && u != width {
		parts := make([]string, len(p.text))
		for i, te := range p.text {
			parts[i] = fmt.Sprintf("%s gives %d", te.name, te.width)
		}
		return fmt.Errorf("the UNet's encoder_hidden_states has %d features, but %s: the parts come from different models", u, strings.Join(parts, ", "))
	}
	if p.family == SDXL {
		te2 := p.text[1]
		if u := p.unet.pooledWidth; u >= 0 && te2.poolWidth >= 0 && u != te2.poolWidth {
			return fmt.Errorf("the UNet's text_embeds has %d features, but text_encoder_2's text_embeds has %d: the parts come from different models", u, te2.poolWidth)
		}
	}
	return nil
}

// imageSize is the image size in pixels the options or the UNet's config ask for.
func (p *Pipeline) imageSize(o Options) (h, w int, err error) {
	f := p.vae.factor
	h, w = o.Height, o.Width
	if h == 0 || w == 0 {
		sh, sw, err := p.unet.sampleSize()
		if err != nil {
			return 0, 0, err
		}
		if h == 0 {
			h = sh * f
		}
		if w == 0 {
			w = sw * f
		}
	}
	if h <= 0 || w <= 0 {
		// No unet/config.json and dynamic axes: the family's native size, said out loud.
		side := 512
		if p.family == SDXL {
			side = 1024
		}
		if h <= 0 {
			h = side
		}
		if w <= 0 {
			w = side
		}
		p.log.Warn("the export records no sample size (unet/config.json); pass --width and --height if this is not the size it was trained at", "model", p.dir, "width", w, "height", h)
	}
	if h%f != 0 || w%f != 0 {
		return 0, 0, fmt.Errorf("image size %dx%d is not a multiple of the VAE's scale factor %d; pass --width and --height that are", w, h, f)
	}
	return h, w, nil
}

// defaults are the settings diffusers' pipelines use for this kind of model.
func (p *Pipeline) defaults(idx *modelIndex) pipelines.Defaults {
	rule, eta := p.sched.Rule()
	d := pipelines.Defaults{Steps: 50, Guidance: 7.5, Sampler: rule, Eta: eta}
	switch {
	case p.family == LCM:
		d.Steps, d.Guidance = 4, 8.5
	case isTurbo(p.dir, idx):
		// Guidance-distilled: one step without guidance is what the model was trained for.
		d.Steps, d.Guidance = 1, 0
	case p.family == SDXL:
		d.Guidance = 5
	}
	return d
}

// isTurbo reports whether an export is a guidance-distilled Turbo model, which nothing in its
// configs records: its name says so.
func isTurbo(dir string, idx *modelIndex) bool {
	for _, s := range []string{idx.NameOrPath, filepath.Base(filepath.Clean(dir))} {
		if strings.Contains(strings.ToLower(s), "turbo") {
			return true
		}
	}
	return false
}

func exportName(dir string, idx *modelIndex) string {
	if idx.NameOrPath != "" {
		return idx.NameOrPath
	}
	return filepath.Base(filepath.Clean(dir))
}

// Info describes the model.
func (p *Pipeline) Info() pipelines.Info { return p.info }

// Scheduler returns the scheduler the pipeline samples with: the folder's, or the override.
func (p *Pipeline) Scheduler() schedule.Scheduler { return p.sched }

// Schedule returns the steps+1 levels of the scheduler's grid.
func (p *Pipeline) Schedule(steps int) ([]schedule.Level, error) {
	if steps <= 0 {
		return nil, fmt.Errorf("steps must be positive (got %d)", steps)
	}
	return p.sched.Levels(steps)
}

// Condition encodes the prompt and the negative prompt (opts.Negative, empty by default).
// Vector holds the prompt's token states (77 rows of the encoders' features, SDXL's two
// encoders' penultimate layers side by side), NullVector the negative prompt's; SDXL's pooled
// embeddings go in Pooled and NullPooled. SDXL models that ask for it get zeros for an empty
// negative prompt, as diffusers gives them.
func (p *Pipeline) Condition(ctx context.Context, st *pipelines.Stats, prompt string, opts pipelines.CondOptions) (pipelines.Cond, error) {
	c := pipelines.Cond{Kind: pipelines.VectorCond, Tokens: p.text[0].tok.MaxLength()}
	if opts.Class != nil {
		return c, fmt.Errorf("Stable Diffusion is conditioned on text; --class does not apply")
	}
	texts := []string{opts.Negative, prompt}
	start := time.Now()
	var hidden []float32
	var width int
	for _, te := range p.text {
		h, pooled, err := te.encode(ctx, p.log, texts)
		if err != nil {
			return c, err
		}
		w := len(h) / (2 * te.tok.MaxLength())
		if hidden == nil {
			hidden, width = h, w
		} else {
			hidden, width = concatFeatures(hidden, width, h, w), width+w
		}
		if pooled != nil {
			half := len(pooled) / 2
			c.NullPooled, c.Pooled = pooled[:half:half], pooled[half:]
		}
	}
	st.AddAux(time.Since(start))
	half := len(hidden) / 2
	c.NullVector, c.Vector = hidden[:half:half], hidden[half:]
	if p.forceZeros && opts.Negative == "" {
		clear(c.NullVector)
		clear(c.NullPooled)
	}
	return c, nil
}

// Predict runs the UNet on n latents; see [pipelines.Pipeline]. With guidance above 1 and a
// prompt that differs from the negative one it runs one batch of 2n rows [negative; prompt].
// An LCM UNet gets guidance through its timestep_cond embedding and never a doubled batch.
func (p *Pipeline) Predict(ctx context.Context, st *pipelines.Stats, x []float32, n int, lvl schedule.Level, c pipelines.Cond, guidance float64, x0, eps []float32) error {
	guided := !p.unet.lcm() && guidance > 1 && c.Guidable()
	if err := p.unet.guided.Predict(ctx, st, x, n, lvl, c, guidance, guided, x0, eps); err != nil {
		return err
	}
	if p.sched.Kind == schedule.LCMScheduler {
		p.lcmBoundary(lvl, x, x0, eps)
	}
	return nil
}

// lcmBoundary applies the consistency model's parameterisation (Song et al. 2023, eq. 6;
// diffusers' LCMScheduler.step): the model's clean estimate is c_skip(t)*x + c_out(t)*x0, which
// at t = 0 is x itself. eps is made consistent with the new x0.
func (p *Pipeline) lcmBoundary(lvl schedule.Level, x, x0, eps []float32) {
	cSkip, cOut := p.sched.LCMBoundary(lvl.Time)
	inv := 0.0
	if lvl.Sigma > 0 {
		inv = 1 / lvl.Sigma
	}
	for i, xi := range x {
		d := cSkip*float64(xi) + cOut*float64(x0[i])
		x0[i] = float32(d)
		eps[i] = float32((float64(xi) - lvl.Alpha*d) * inv)
	}
}

// RescaleGuidance is diffusers' rescale_noise_cfg for rows of rowLen values: each row of the
// guided prediction g is scaled to the standard deviation of the same row of the conditional
// prediction c, and the result mixed with g as phi*scaled + (1-phi)*g. Standard deviations are
// torch.std's, with Bessel's correction, computed in float64.
func RescaleGuidance(g, c []float32, rowLen int, phi float64) {
	for r := 0; r+rowLen <= len(g); r += rowLen {
		sg, sc := stddev(g[r:r+rowLen]), stddev(c[r:r+rowLen])
		if sg == 0 {
			continue
		}
		f := phi*sc/sg + (1 - phi)
		for i := r; i < r+rowLen; i++ {
			g[i] = float32(float64(g[i]) * f)
		}
	}
}

func stddev(v []float32) float64 {
	if len(v) < 2 {
		return 0
	}
	var mean float64
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	var ss float64
	for _, x := range v {
		d := float64(x) - mean
		ss += d * d
	}
	return math.Sqrt(ss / float64(len(v)-1))
}

// Decode runs the VAE decoder on n latents, batched.
func (p *Pipeline) Decode(ctx context.Context, st *pipelines.Stats, x []float32, n int, dst pixels.Images) error {
	return p.vae.decode(ctx, st, p.info, x, n, dst, false)
}

// Preview decodes with the preview decoder when one was given, and like Decode otherwise.
func (p *Pipeline) Preview(ctx context.Context, st *pipelines.Stats, x []float32, n int, dst pixels.Images) error {
	return p.vae.decode(ctx, st, p.info, x, n, dst, true)
}

// Encode runs the VAE encoder: images in [0, 1] of the pipeline's image size to latents (the
// mean of the latent distribution where the export gives it, times the scaling factor).
func (p *Pipeline) Encode(ctx context.Context, st *pipelines.Stats, imgs pixels.Images, dst []float32) error {
	return p.vae.encode(ctx, st, p.info, imgs, dst)
}

// Stats reports UNet calls and the time spent in them.
func (p *Pipeline) Stats() pipelines.Stats { return p.unet.guided.Stats() }

// Close releases every session. It is safe to call more than once.
func (p *Pipeline) Close() error {
	p.closeOnce.Do(func() {
		for _, te := range p.text {
			te.sess.Close()
		}
		if p.unet != nil {
			p.unet.close()
		}
		if p.vae != nil {
			p.vae.close()
		}
	})
	return nil
}

var (
	_ pipelines.Pipeline     = (*Pipeline)(nil)
	_ pipelines.Previewer    = (*Pipeline)(nil)
	_ pipelines.ImageEncoder = (*Pipeline)(nil)
)
