package synth

import (
	"math"

	"github.com/fksteer/fksteer/models/onnxgraph"
	"github.com/fksteer/fksteer/schedule"
)

// The synthetic UNet is the exact denoiser of a Gaussian data distribution, so that samplers
// and guidance can be checked against closed forms. Notation (DESIGN.md's where it has one):
//
//	x      sample, the noisy latent x = Alpha*x0 + Sigma*eps
//	mu     the data mean per latent element, from the conditioning (below)
//	s      SDDataStd, the data's standard deviation per element: x0 ~ N(mu, s^2)
//	Alpha  sqrt(abar_t), Sigma sqrt(1-abar_t): SD's scaled_linear schedule at timestep t
//	eps    the exact prediction E[eps | x] = Sigma (x - Alpha mu) / (Alpha^2 s^2 + Sigma^2)
//	v      for v-prediction, Alpha eps - Sigma x0hat with x0hat = (x - Sigma eps)/Alpha
//
// mu[b, c, i, j] = tanh(mean over the sequence of encoder_hidden_states[b] @ W)[c]
// + SDMeanPattern(h, w)[c, i, j], plus for SDXL 0.5*tanh(text_embeds[b] @ W2)[c] +
// 1e-3*mean(time_ids[b])/1024, and for LCM 0.05*tanh(mean(timestep_cond[b])). W and W2 are
// random but blind to the empty prompt's conditioning (see sdEmptyPrompt): with the empty
// prompt, or with every conditioning input zero, mu is the pattern alone (SDXL: plus the tiny
// time_ids term).

// SDDataStd is s, the standard deviation of each latent element under the data distribution
// the synthetic UNet denoises exactly.
const SDDataStd = 0.5

// sdLatentChannels is the UNet's in_channels and out_channels, and the VAE's latent_channels.
const sdLatentChannels = 4

// The spatial pattern of the data mean: channel c is
// 0.3 sin(2π fy_c (i+0.5)/h + py_c) cos(2π fx_c (j+0.5)/w + px_c).
var (
	patternFY = [sdLatentChannels]float64{1, 2, 1, 0.5}
	patternPY = [sdLatentChannels]float64{0, 1, 2, 3}
	patternFX = [sdLatentChannels]float64{1, 1, 2, 1.5}
	patternPX = [sdLatentChannels]float64{0.5, 0, 1.5, 2}
)

const patternAmp = 0.3

// SDMeanPattern returns the fixed spatial part of the synthetic UNet's data mean for h x w
// latents, as a [4, h, w] array in row-major order: the whole mean when every conditioning
// input (encoder_hidden_states, and SDXL's text_embeds and time_ids, LCM's timestep_cond) is
// zero. Channel c, row i, column j holds 0.3 sin(2π fy (i+0.5)/h + py) cos(2π fx (j+0.5)/w + px)
// with per-channel constants; the pattern scales with the latent size, so images of any size
// show the same few smooth blobs.
func SDMeanPattern(h, w int) []float32 {
	out := make([]float32, 0, sdLatentChannels*h*w)
	for c := range sdLatentChannels {
		for i := range h {
			y := math.Sin(2*math.Pi*patternFY[c]*(float64(i)+0.5)/float64(h) + patternPY[c])
			for j := range w {
				x := math.Cos(2*math.Pi*patternFX[c]*(float64(j)+0.5)/float64(w) + patternPX[c])
				out = append(out, float32(patternAmp*y*x))
			}
		}
	}
	return out
}

// sdNoiseTable is sigma_t = sqrt((1-abar_t)/abar_t) for t = 0..999 under SD's scaled_linear
// betas.
func sdNoiseTable() []float32 {
	abar, err := schedule.DefaultSD().AlphasCumprod()
	if err != nil {
		panic(err) // DefaultSD is a valid schedule
	}
	table := make([]float32, len(abar))
	for t, a := range abar {
		table[t] = float32(math.Sqrt((1 - a) / a))
	}
	return table
}

// sdUNet builds the UNet: inputs sample, timestep, encoder_hidden_states (SDXL also
// text_embeds and time_ids, LCM timestep_cond), output out_sample, the exact eps (or v) of the
// Gaussian data above.
//
// A fractional timestep t (clamped to [0, 999]) gets sigma interpolated linearly between
// sigma_floor(t) and sigma_floor(t)+1, numpy.interp as diffusers' Euler scheduler and
// schedule.Discrete.EulerLevels place fractional timesteps; integer timesteps get the table's
// own values.
func sdUNet(s sdSpec, o SDOptions, empty sdEmptyPrompt) *onnxgraph.Graph {
	b := sdBuilder("unet", o.Seed)
	g := b.g
	batch, ch, h, w := onnxgraph.Sym("batch_size"), onnxgraph.Sym("num_channels"), onnxgraph.Sym("height"), onnxgraph.Sym("width")
	x := b.floatIn(Sample, s.float, batch, ch, h, w)
	ts := g.Input(Timestep, s.timestep, s.tdims...)
	cross := s.crossDim()
	ehs := b.floatIn(EncoderHiddenStates, s.float, batch, onnxgraph.Sym("sequence_length"), onnxgraph.Fixed(cross))
	var textEmbeds, timeIDs, cond string
	if s.xl {
		textEmbeds = b.floatIn(TextEmbeds, s.float, batch, onnxgraph.Fixed(s.textEmbedsDim()))
		timeIDs = b.floatIn(TimeIDs, s.float, batch, onnxgraph.Fixed(6))
	}
	if s.lcm {
		cond = b.floatIn(TimestepCond, s.float, batch, onnxgraph.Fixed(sdTimeCondDim))
	}

	// mu: the text term [batch, 4], the extra conditioning terms, then the pattern.
	mean := func(v string, keep int64) string {
		return g.Op("ReduceMean", []string{v}, onnxgraph.AttrInts("axes", 1), onnxgraph.AttrInt("keepdims", keep))
	}
	textW := blind(b.randn(sdTextGain/math.Sqrt(float64(cross)), cross*sdLatentChannels), sdLatentChannels, empty.states)
	textW0 := g.Initializer(g.Fresh("text_to_mean"), []int64{cross, sdLatentChannels}, textW)
	mu := g.Op("Tanh", []string{g.Op("MatMul", []string{mean(ehs, 0), textW0})})
	if s.xl {
		p := s.textEmbedsDim()
		pooledW := blind(b.randn(sdTextGain/math.Sqrt(float64(p)), p*sdLatentChannels), sdLatentChannels, empty.pooled)
		pooledW0 := g.Initializer(g.Fresh("pooled_to_mean"), []int64{p, sdLatentChannels}, pooledW)
		pooled := g.Op("Tanh", []string{g.Op("MatMul", []string{textEmbeds, pooledW0})})
		mu = g.Op("Add", []string{mu, g.Op("Mul", []string{pooled, g.Scalar(0.5)})})
		mu = g.Op("Add", []string{mu, g.Op("Mul", []string{mean(timeIDs, 1), g.Scalar(1e-3 / 1024)})})
	}
	if s.lcm {
		mu = g.Op("Add", []string{mu, g.Op("Mul", []string{g.Op("Tanh", []string{mean(cond, 1)}), g.Scalar(0.05)})})
	}
	mu = g.Op("Add", []string{g.Op("Reshape", []string{mu, g.Int64s(0, sdLatentChannels, 1, 1)}), b.meanPattern(x)})

	// Alpha and Sigma from the timestep, shaped to broadcast against [batch, 4, h, w].
	tf := ts
	if s.timestep != onnxgraph.Float32 {
		tf = g.Op("Cast", []string{ts}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))
	}
	tf = g.Op("Clip", []string{tf, g.Scalar(0), g.Scalar(999)})
	lo := g.Op("Floor", []string{tf})
	frac := g.Op("Sub", []string{tf, lo})
	loIdx := g.Op("Cast", []string{lo}, onnxgraph.AttrInt("to", int64(onnxgraph.Int64)))
	hiIdx := g.Op("Min", []string{g.Op("Add", []string{loIdx, b.int64Scalar(1)}), b.int64Scalar(999)})
	table := g.Initializer(g.Fresh("sigma_table"), []int64{1000}, sdNoiseTable())
	sigma := g.Op("Add", []string{
		g.Op("Mul", []string{g.Op("Gather", []string{table, loIdx}), g.Op("Sub", []string{g.Scalar(1), frac})}),
		g.Op("Mul", []string{g.Op("Gather", []string{table, hiIdx}), frac}),
	})
	sigma = g.Op("Reshape", []string{sigma, g.Int64s(-1, 1, 1, 1)})
	alpha := g.Op("Reciprocal", []string{g.Op("Sqrt", []string{g.Op("Add", []string{g.Scalar(1), g.Op("Mul", []string{sigma, sigma})})})})
	noise := g.Op("Mul", []string{sigma, alpha}) // Sigma

	// eps = Sigma (x - Alpha mu) / (Alpha^2 s^2 + Sigma^2).
	den := g.Op("Add", []string{
		g.Op("Mul", []string{g.Op("Mul", []string{alpha, alpha}), g.Scalar(SDDataStd * SDDataStd)}),
		g.Op("Mul", []string{noise, noise}),
	})
	out := g.Op("Div", []string{g.Op("Mul", []string{noise, g.Op("Sub", []string{x, g.Op("Mul", []string{alpha, mu})})}), den})
	if s.vpred {
		// v = Alpha eps - Sigma (x - Sigma eps)/Alpha = (eps - Sigma x)/Alpha, as Alpha^2 + Sigma^2 = 1.
		out = g.Op("Div", []string{g.Op("Sub", []string{out, g.Op("Mul", []string{noise, x})}), alpha})
	}
	if o.Convs > 0 {
		out = g.Op("Add", []string{out, b.convBallast(x, o.Convs)})
	}
	b.floatOut(OutSample, out, s.float, batch, ch, h, w)
	return g
}

// sdTextGain scales the random weights from the conditioning to the mean.
const sdTextGain = 3

// sdEmptyPrompt is the conditioning a pipeline passes for the empty prompt "", computed in Go
// from the text encoders' weights. The UNet's weights from the conditioning to the mean are
// made blind to it, so that the empty prompt's mean is the pattern alone, and what the mean
// does show of a prompt is what sets it apart from the empty one.
type sdEmptyPrompt struct {
	states []float64 // the mean over the sequence of encoder_hidden_states: [cross_attention_dim]
	pooled []float64 // SDXL's text_embeds
}

// add appends one text encoder's share: its last_hidden_state, or for SDXL its penultimate
// hidden state (hidden_states.L-1) as diffusers' SDXL pipeline concatenates them, and the
// second SDXL encoder's text_embeds.
func (e *sdEmptyPrompt) add(s sdSpec, w *sdTextWeights, ids []int) {
	out := w.forward(ids)
	states := out.last
	if s.xl {
		states = out.hidden[len(out.hidden)-2]
	}
	e.states = append(e.states, seqMean(states, int(w.t.dim))...)
	if out.embeds != nil {
		e.pooled = out.embeds
	}
}

// blind removes direction c from w [len(c), cols] so that c w = 0: each column loses its
// component along c.
func blind(w []float32, cols int, c []float64) []float32 {
	var norm2 float64
	for _, v := range c {
		norm2 += v * v
	}
	if norm2 == 0 {
		return w
	}
	for j := range cols {
		var cw float64
		for i, v := range c {
			cw += v * float64(w[i*cols+j])
		}
		for i, v := range c {
			w[i*cols+j] -= float32(v * cw / norm2)
		}
	}
	return w
}

// meanPattern builds SDMeanPattern for the height and width of x [batch, 4, h, w]: [1, 4, h, w].
func (b *builder) meanPattern(x string) string {
	g := b.g
	axis := func(dim int64, freq, phase [sdLatentChannels]float64, fn string, shape ...int64) string {
		n := b.dim(x, dim)
		nf := g.Op("Cast", []string{n}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))
		u := g.Op("Div", []string{g.Op("Add", []string{b.rangeFloat(n, 0), g.Scalar(0.5)}), nf}) // (i+0.5)/n
		u = g.Op("Reshape", []string{u, g.Int64s(shape...)})
		f, p := make([]float32, sdLatentChannels), make([]float32, sdLatentChannels)
		for c := range sdLatentChannels {
			f[c], p[c] = float32(2*math.Pi*freq[c]), float32(phase[c])
		}
		fs := g.Initializer(g.Fresh("pattern_freq"), []int64{1, sdLatentChannels, 1, 1}, f)
		ps := g.Initializer(g.Fresh("pattern_phase"), []int64{1, sdLatentChannels, 1, 1}, p)
		return g.Op(fn, []string{g.Op("Add", []string{g.Op("Mul", []string{u, fs}), ps})})
	}
	rows := axis(2, patternFY, patternPY, "Sin", 1, 1, -1, 1)
	cols := axis(3, patternFX, patternPX, "Cos", 1, 1, 1, -1)
	return g.Op("Mul", []string{g.Op("Mul", []string{rows, cols}), g.Scalar(patternAmp)})
}

// ballastWidth is the channel count of the conv ballast's hidden layers.
const ballastWidth = 64

// convBallast is n 3x3 convolutions on x (4 → 64 → ... → 64 → 4 channels, SiLU between),
// scaled by 1e-3: compute for benchmarks, a small perturbation of the exact denoiser.
func (b *builder) convBallast(x string, n int) string {
	g := b.g
	h, in := x, int64(sdLatentChannels)
	for i := range n {
		out := int64(ballastWidth)
		if i == n-1 {
			out = sdLatentChannels
		}
		h = g.Op("Conv", []string{h, b.weight("ballast_w", math.Sqrt(2/float64(9*in)), out, in, 3, 3), b.weight("ballast_b", 0.02, out)},
			onnxgraph.AttrInts("kernel_shape", 3, 3), onnxgraph.AttrInts("pads", 1, 1, 1, 1))
		if i < n-1 {
			h = g.Op("Mul", []string{h, g.Op("Sigmoid", []string{h})})
		}
		in = out
	}
	return g.Op("Mul", []string{h, g.Scalar(1e-3)})
}
