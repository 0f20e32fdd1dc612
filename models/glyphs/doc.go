// Package glyphs is fksteer's built-in model: a text-conditioned diffusion model whose exact
// denoiser is known, so that `fksteer generate` works with nothing to download but ONNX Runtime,
// and steering can be checked against exact answers.
//
// # Data set
//
// The model generates one of M = 968 RGB images of 32x32 pixels, rendered here from the Go fonts
// (golang.org/x/image/font/gofont). Each image writes one text in one text colour on one
// background:
//
//   - texts: A-Z, 0-9 and the words go, ok, hi, fk, cat, dog, sun, yes (44);
//   - text colours: red (230,25,25), green (0,170,0), blue (30,60,255), yellow (255,220,0),
//     white (255,255,255), black (0,0,0);
//   - backgrounds: white (255,255,255), black (0,0,0), gray (128,128,128), navy (0,0,128).
//
// Every text appears once with every (text colour, background) pair whose colours differ:
// 44 x (6 x 4 - 2) = 968 images, ordered by text, then text colour, then background, each in the
// order above. Each image's font (goregular, gobold or gomono) and placement (centred, or moved 3
// pixels left, right, up or down) are picked from an FNV-1a hash of its text and colours, which
// spreads them evenly and never changes. The text is drawn at the largest whole pixel size whose
// ink fits 24x20 pixels and its ink box is centred before the move, so nothing is clipped.
//
// Rendering is bit-identical on every run and platform: glyph outlines come from sfnt, which
// scales them with integers, and a small integer rasteriser (8x8 samples per pixel) draws them,
// where x/image/vector's float32 arithmetic could round differently on platforms that fuse
// multiply-adds. Pixels p in 0..255 are stored in data space as (2p-255)/255 in [-1, 1], float32,
// NCHW. Tests pin M and a checksum of the pixels.
//
// # Prompts
//
// A prompt selects images by their tags (Dataset.Match):
//
//   - It is lowercased; typographic quotes count as double quotes.
//   - Text: the content of the first pair of double quotes, if any, compared with the texts
//     ignoring case; otherwise every word that is one of the multi-letter texts, or a single
//     digit. A single letter counts only when quoted, so the article "a" is not the letter A.
//   - Colours (red, green, blue, yellow, white, black, gray or grey, navy): a colour word right
//     after "on" (an article may stand between) or right before "background" names the
//     background; any other colour word names the text colour. Words inside the quotes are not
//     colour words.
//   - Words are split at anything that is not a letter or a digit.
//   - An image is selected when it satisfies every attribute the prompt mentions; several values
//     of one attribute are alternatives ("red or blue"). If the prompt mentions nothing, or no
//     image satisfies it, every image is selected and Selection.Matched is false, so that
//     callers can say so.
//
// Examples: `a red "A" on black` selects 1 image; `"7" in yellow` 4 (one per background);
// `the word cat` 22; `on navy` 264; `white text on a black background` 44; `a red A` 176 (every
// red text: the unquoted A is an article); `navy text` and `a lighthouse` select all 968.
//
// The selection becomes the prior over images: log-weight 0 for a selected image and LogZero
// (-1e30, not -Inf; see LogZero) for the others.
//
// # The model and why its denoiser is exact
//
// The model uses the rectified-flow convention x_t = (1-t) x0 + t eps with eps ~ N(0, I) and
// t in [0, 1], t = 1 being pure noise. Its data distribution given a prompt is the mixture
// sum_m pi_m delta(x_m) over the images x_m, with pi the prompt's prior. For such a distribution
// the best denoiser in the mean-squared sense, E[x0 | x_t], has a closed form: by Bayes' rule
// the posterior over images is
//
//	w_m ∝ pi_m N(x_t; (1-t) x_m, t^2 I)
//	log w_m = log pi_m + ((1-t) <x_t, x_m> - (1-t)^2 ||x_m||^2 / 2) / t^2 + const
//
// (the ||x_t||^2 term is the same for every m and cancels in the normalisation), and
// E[x0 | x_t] = sum_m w_m x_m. No network is trained, so nothing is approximate: a sampler that
// integrates this denoiser exactly samples the prior, and steering can be compared with target
// distributions computed from PosteriorWeights.
//
// BuildDenoiser writes this as an ONNX graph (inputs x [batch,3,32,32], t [batch],
// prior [batch,M]; output x0 [batch,3,32,32]) computed in float64; PosteriorMean and
// PosteriorWeights compute it directly in Go as a reference. t is clamped below at MinT = 1e-4
// so that t = 0 never divides by zero. EnsureModel writes the model once into a cache folder
// named by its content hash.
package glyphs
