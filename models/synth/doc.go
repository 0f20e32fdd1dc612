// Package synth builds small synthetic ONNX models with the exact layouts and tensor names of
// real exports that are too large to ship or could not be obtained: a DINOv2-shaped vision
// backbone, a CLIP-shaped image encoder and a CLIP-shaped image-text scorer. Tests run fksteer's
// rewards on them to check shapes, names, batching and arithmetic; the weights are random
// (seeded, deterministic), so the scores mean nothing.
//
// Every model is a real, if tiny, transformer: a patch-embedding convolution, a class token
// (and optional register tokens), learned position embeddings, one pre-norm block of
// single-head self-attention and an MLP, and a final layer norm; the text tower embeds token ids
// and pools the hidden state at the end-of-text token (the position of the largest id), as
// CLIP does. The bytes are deterministic: the same configuration gives the same model.
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
