package synth

import (
	"math"

	"github.com/fksteer/fksteer/models/onnxgraph"
)

// The synthetic VAE. The decoder maps each latent pixel to an 8x8 block of RGB pixels:
// sample = tanh(M z) block by block, where the 192x4 matrix M is scaling_factor times the
// well-known linear latent-to-RGB approximation of SD's VAE (the same colours for every pixel
// of a block) plus a small seeded texture per pixel of the block. The encoder inverts it:
// latent mean = pinv(M) atanh(clip(image, ±0.99)) per 8x8 block, so encoding a decoded image
// gives back its latents, and a photograph keeps its coarse colours through a round trip.
// Neither model multiplies by the scaling factor: the decoder takes latents already divided by
// it and the encoder returns undivided ones, as the real VAE does.

const (
	sdVAEScale = 8 // pixels per latent pixel along each axis
	sdRGB      = 3
	// sdLogVar is the log-variance the encoder reports for every latent element.
	sdLogVar = -6.0
	// sdEncoderSeed seeds the old-style encoder's RandomNormalLike.
	sdEncoderSeed = 1234
	// sdClip bounds the pixels the encoder inverts tanh at.
	sdClip = 0.99
	// sdTexture is the standard deviation of the per-pixel texture in M.
	sdTexture = 0.05
	// sdDecoderGain scales the latent-to-RGB map, for contrast: the UNet's data (mean within
	// about ±1, standard deviation 0.5) then spans most of [-1, 1] without saturating.
	sdDecoderGain = 2
)

// latentToRGB is the linear latent-to-RGB map often used to preview SD 1.x latents (rows:
// latent channels; columns: R, G, B), for latents multiplied by the scaling factor.
var latentToRGB = [sdLatentChannels][sdRGB]float64{
	{0.298, 0.207, 0.208},
	{0.187, 0.286, 0.173},
	{-0.158, 0.189, 0.264},
	{-0.184, -0.271, -0.473},
}

// sdVAE builds the decoder (latent_sample → sample) and the encoder (sample → latent_sample
// or latent_parameters).
func sdVAE(s sdSpec, seed uint64) (dec, enc *onnxgraph.Graph) {
	const k = sdVAEScale * sdVAEScale * sdRGB // 192 channels before DepthToSpace
	// The texture is seeded; the encoder is computed from the decoder, not drawn.
	rng := sdBuilder("vae", seed).rng
	// m[(di*8+dj)*3+c][ch]: DepthToSpace's DCR order puts channel (di*8+dj)*3+c at pixel (di, dj)
	// of the block, colour c.
	m := make([][sdLatentChannels]float64, k)
	for row := range m {
		c := row % sdRGB
		for ch := range sdLatentChannels {
			m[row][ch] = s.scaling * sdDecoderGain * (latentToRGB[ch][c] + sdTexture*rng.NormFloat64())
		}
	}
	batch := onnxgraph.Sym("batch_size")
	hl, wl := onnxgraph.Sym("height_latent"), onnxgraph.Sym("width_latent")

	db := sdBuilder("vae_decoder", seed)
	g := db.g
	w := make([]float32, 0, k*sdLatentChannels)
	for _, r := range m {
		for _, v := range r {
			w = append(w, float32(v))
		}
	}
	z := db.floatIn(LatentSample, s.float, batch, onnxgraph.Sym("num_channels_latent"), hl, wl)
	y := g.Op("Conv", []string{z, g.Initializer(g.Fresh("decoder_w"), []int64{k, sdLatentChannels, 1, 1}, w)},
		onnxgraph.AttrInts("kernel_shape", 1, 1))
	y = g.Op("DepthToSpace", []string{y}, onnxgraph.AttrInt("blocksize", sdVAEScale), onnxgraph.AttrString("mode", "DCR"))
	db.floatOut(Sample, g.Op("Tanh", []string{y}), s.float, batch, onnxgraph.Fixed(sdRGB), onnxgraph.Sym("height"), onnxgraph.Sym("width"))

	eb := sdBuilder("vae_encoder", seed)
	g = eb.g
	pinv := pseudoInverse(m)
	outCh := int64(sdLatentChannels)
	if s.latentOut == LatentParameters {
		outCh = 2 * sdLatentChannels // mean, then log-variance
	}
	we := make([]float32, outCh*k)
	bias := make([]float32, outCh)
	for ch := range sdLatentChannels {
		for j := range k {
			we[ch*k+j] = float32(pinv[ch][j])
		}
	}
	for ch := sdLatentChannels; ch < int(outCh); ch++ {
		bias[ch] = sdLogVar
	}
	x := eb.floatIn(Sample, s.float, batch, onnxgraph.Sym("num_channels"), onnxgraph.Sym("height"), onnxgraph.Sym("width"))
	a := g.Op("Atanh", []string{g.Op("Clip", []string{x, g.Scalar(-sdClip), g.Scalar(sdClip)})})
	a = g.Op("SpaceToDepth", []string{a}, onnxgraph.AttrInt("blocksize", sdVAEScale))
	lat := g.Op("Conv", []string{a, g.Initializer(g.Fresh("encoder_w"), []int64{outCh, k, 1, 1}, we), g.Initializer(g.Fresh("encoder_b"), []int64{outCh}, bias)},
		onnxgraph.AttrInts("kernel_shape", 1, 1))
	if s.latentOut == LatentSample {
		// The old conversion script traced encode(x).latent_dist.sample(): mean + std * noise.
		noise := g.Op("RandomNormalLike", []string{lat}, onnxgraph.AttrFloat("mean", 0),
			onnxgraph.AttrFloat("scale", float32(math.Exp(sdLogVar/2))), onnxgraph.AttrFloat("seed", sdEncoderSeed))
		lat = g.Op("Add", []string{lat, noise})
	}
	eb.floatOut(s.latentOut, lat, s.float, batch, onnxgraph.Fixed(outCh), hl, wl)
	return db.g, eb.g
}

// pseudoInverse returns (MᵀM)⁻¹Mᵀ for m with full column rank: [4][rows].
func pseudoInverse(m [][sdLatentChannels]float64) [sdLatentChannels][]float64 {
	const n = sdLatentChannels
	var a [n][2 * n]float64 // [MᵀM | I], reduced to [I | (MᵀM)⁻¹]
	for i := range n {
		for j := range n {
			for _, r := range m {
				a[i][j] += r[i] * r[j]
			}
		}
		a[i][n+i] = 1
	}
	for col := range n {
		p := col
		for r := col + 1; r < n; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[p][col]) {
				p = r
			}
		}
		a[col], a[p] = a[p], a[col]
		pivot := a[col][col]
		for j := range 2 * n {
			a[col][j] /= pivot
		}
		for r := range n {
			if r != col {
				f := a[r][col]
				for j := range 2 * n {
					a[r][j] -= f * a[col][j]
				}
			}
		}
	}
	var out [n][]float64
	for i := range n {
		out[i] = make([]float64, len(m))
		for row, r := range m {
			for j := range n {
				out[i][row] += a[i][n+j] * r[j]
			}
		}
	}
	return out
}
