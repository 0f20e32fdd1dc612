// Package synth builds small synthetic ONNX models with the exact layouts and tensor names of
// real exports that are too large to ship or could not be obtained: a DINOv2-shaped vision
// backbone, a CLIP-shaped image encoder, a CLIP-shaped image-text scorer, an ImageReward-shaped
// (BLIP) scorer reading BERT ids and an attention mask, and whole Stable-Diffusion export
// folders. Tests and benchmarks run fksteer on them to check shapes,
// names, element types, batching and arithmetic. The weights are random (seeded,
// deterministic), so scores and images mean nothing; the bytes are deterministic: the same
// configuration gives the same files.
//
// # Vision and CLIP models
//
// Every model is a real, if tiny, transformer: a patch-embedding convolution, a class token
// (and optional register tokens), learned position embeddings, one pre-norm block of
// single-head self-attention and an MLP, and a final layer norm; the text tower embeds token ids
// and pools the hidden state at the end-of-text token (the position of the largest id), as
// CLIP does.
//
// # Stable Diffusion export folders
//
// [WriteSD] writes a folder with the layout of a diffusers/optimum ONNX export of one of the
// [SDVariants]: model_index.json, scheduler/scheduler_config.json (the real model's scheduler
// settings), CLIP tokenizer folders, text_encoder/ (SDXL also text_encoder_2/), unet/,
// vae_decoder/ and vae_encoder/, each model with a config.json. What is real: file names, the
// JSON files' keys and values that a pipeline reads, tensor names, element types, ranks,
// dynamic axes, output order, external weight files where real exports have them, and the
// scheduler configs. What is not: the sizes (hidden sizes of 32 to 80 instead of 768 to 2048, a
// vocabulary of 568 tokens instead of 49408) and the networks, which are small stand-ins:
//
//   - The tokenizers carry a generated CLIP-format BPE vocabulary: the 512 byte symbols (with
//     and without </w>), a few dozen merges of common English letter pairs, then
//     <|startoftext|> and <|endoftext|> as the two largest ids. Common words ("a photo of a
//     cat") get one token each, anything else encodes byte by byte. SD 1.x pads with
//     <|endoftext|>, SD 2.x and SDXL's second tokenizer with "!", as the real ones do.
//   - The text encoders are causal (position i sees positions <= i) and pool at the end-of-text
//     token, as CLIP does, but are a few cumulative-mean layers, not attention.
//   - The UNet is the exact denoiser of Gaussian data: each latent element is x0 ~ N(mu,
//     SDDataStd^2), and the UNet returns the exact E[eps | x] (v for sd2-v) at the noise level of
//     its timestep on SD's scaled_linear schedule, so samplers, guidance and steering can be
//     checked against closed forms. The mean mu is a fixed spatial pattern ([SDMeanPattern])
//     plus a bounded term from the mean of encoder_hidden_states over the sequence (and SDXL's
//     text_embeds and time_ids, LCM's timestep_cond). The text weights are blind to the empty
//     prompt, so that "" (and all-zero conditioning) gives the pattern alone while real prompts
//     shift the mean by up to about 1 per channel. A fractional timestep gets its noise level
//     interpolated in the sigma table, as diffusers' Euler scheduler does.
//     [SDOptions].Convs adds a residual branch of 3x3 convolutions, scaled by 1e-3, as compute
//     ballast for benchmarks: it perturbs the exact denoiser slightly (by about 1e-3).
//   - The VAE decoder turns each latent pixel into an 8x8 block through a linear
//     latent-to-RGB map with a seeded texture and tanh; the encoder is its inverse (up to
//     clipping), so a round trip keeps latents and coarse colours. The old-style encoder's
//     latent_sample adds RandomNormalLike noise of standard deviation exp(-3), the newer
//     latent_parameters holds the mean and a constant log-variance of -6.
//
// Float16 variants compute in float32 inside and cast at their inputs and outputs; real float16
// exports compute in float16 throughout.
package synth

// Tensor names, as Hugging Face's ONNX exports (optimum) name them.
const (
	PixelValues     = "pixel_values"      // float32 [batch, 3, size, size]
	InputIDs        = "input_ids"         // int64 [batch, text length]
	LastHiddenState = "last_hidden_state" // float32 [batch, tokens, dim]: CLS, registers, patches
	PoolerOutput    = "pooler_output"     // float32 [batch, dim]
	ImageEmbeds     = "image_embeds"      // float32 [batch, projection]
	TextEmbeds      = "text_embeds"       // float32 [batch, projection]
	LogitsPerImage  = "logits_per_image"  // float32 [image batch, text batch]
	LogitsPerText   = "logits_per_text"   // float32 [text batch, image batch]
)

// Opset is the ONNX operator set the models use (LayerNormalization needs 17).
const Opset = 17
