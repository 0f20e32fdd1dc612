package synth

import (
	"bytes"
	"encoding/json"

	"github.com/fksteer/fksteer/models/onnxgraph"
)

// The JSON files of an export folder. diffusers and transformers write them with sorted keys
// and an indent of 2 (json.dumps(..., indent=2, sort_keys=True)), which encoding/json's map
// encoding reproduces; float literals that Python writes with a fraction (10.0) are
// json.Number so they keep it.

const diffusersVersion = "0.30.0"

// jsonFile encodes v as diffusers does, without HTML escaping ("<|endoftext|>" stays
// readable).
func jsonFile(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// component is a model_index.json entry: library and class, or [null, null] for none.
func component(lib, class string) []any {
	if lib == "" {
		return []any{nil, nil}
	}
	return []any{lib, class}
}

func (s sdSpec) modelIndex() map[string]any {
	m := map[string]any{
		"_class_name":             s.pipeline,
		"_diffusers_version":      diffusersVersion,
		"scheduler":               component("diffusers", s.scheduler["_class_name"].(string)),
		"text_encoder":            component("transformers", "CLIPTextModel"),
		"tokenizer":               component("transformers", "CLIPTokenizer"),
		"unet":                    component("diffusers", "UNet2DConditionModel"),
		"vae_decoder":             component("diffusers", "AutoencoderKL"),
		"vae_encoder":             component("diffusers", "AutoencoderKL"),
		"safety_checker":          component("", ""),
		"feature_extractor":       component("", ""),
		"requires_safety_checker": false,
	}
	if s.features {
		m["feature_extractor"] = component("transformers", "CLIPImageProcessor")
	}
	if s.nameOrPath != "" {
		m["_name_or_path"] = s.nameOrPath
	}
	if s.xl {
		delete(m, "safety_checker")
		delete(m, "requires_safety_checker")
		m["text_encoder_2"] = component("transformers", "CLIPTextModelWithProjection")
		m["tokenizer_2"] = component("transformers", "CLIPTokenizer")
		m["force_zeros_for_empty_prompt"] = true
	}
	return m
}

// sdBetas are the scheduler fields every Stable Diffusion model shares: scaled_linear betas
// from 0.00085 to 0.012 over 1000 training steps.
func sdBetas(class string) map[string]any {
	return map[string]any{
		"_class_name":         class,
		"_diffusers_version":  diffusersVersion,
		"beta_end":            0.012,
		"beta_schedule":       "scaled_linear",
		"beta_start":          0.00085,
		"num_train_timesteps": 1000,
		"trained_betas":       nil,
		"clip_sample":         false,
		"set_alpha_to_one":    false,
		"steps_offset":        1,
	}
}

// pndmConfig is SD 1.5's scheduler.
func pndmConfig() map[string]any {
	c := sdBetas("PNDMScheduler")
	c["skip_prk_steps"] = true
	return c
}

// ddimVConfig is SD 2.1's (768 px) scheduler.
func ddimVConfig() map[string]any {
	c := sdBetas("DDIMScheduler")
	c["prediction_type"] = "v_prediction"
	c["skip_prk_steps"] = true
	return c
}

// eulerConfig is the Euler scheduler of sd-turbo (trailing spacing) and SDXL (leading).
func eulerConfig(spacing string) map[string]any {
	c := sdBetas("EulerDiscreteScheduler")
	c["interpolation_type"] = "linear"
	c["prediction_type"] = "epsilon"
	c["sample_max_value"] = json.Number("1.0")
	c["skip_prk_steps"] = true
	c["timestep_spacing"] = spacing
	c["use_karras_sigmas"] = false
	return c
}

// lcmConfig is LCM-Dreamshaper-v7's scheduler.
func lcmConfig() map[string]any {
	c := sdBetas("LCMScheduler")
	c["clip_sample_range"] = json.Number("1.0")
	c["dynamic_thresholding_ratio"] = 0.995
	c["original_inference_steps"] = 50
	c["prediction_type"] = "epsilon"
	c["rescale_betas_zero_snr"] = false
	c["sample_max_value"] = json.Number("1.0")
	c["set_alpha_to_one"] = true
	c["thresholding"] = false
	c["timestep_scaling"] = json.Number("10.0")
	c["timestep_spacing"] = "leading"
	return c
}

// preprocessorConfig is feature_extractor/preprocessor_config.json (CLIP's image processor,
// used by the safety checker, which these folders do not have).
func preprocessorConfig() map[string]any {
	return map[string]any{
		"crop_size":            map[string]any{"height": 224, "width": 224},
		"do_center_crop":       true,
		"do_convert_rgb":       true,
		"do_normalize":         true,
		"do_rescale":           true,
		"do_resize":            true,
		"image_mean":           []float64{0.48145466, 0.4578275, 0.40821073},
		"image_processor_type": "CLIPImageProcessor",
		"image_std":            []float64{0.26862954, 0.26130258, 0.27577711},
		"resample":             3,
		"rescale_factor":       0.00392156862745098,
		"size":                 map[string]any{"shortest_edge": 224},
	}
}

func torchDType(e onnxgraph.ElemType) string {
	if e == onnxgraph.Float16 {
		return "float16"
	}
	return "float32"
}

// textConfig is text_encoder/config.json, a transformers CLIPTextConfig with this model's
// sizes and its vocabulary's token ids.
func (s sdSpec) textConfig(t sdText, tok *sdVocab) map[string]any {
	arch, proj := "CLIPTextModel", t.dim
	if t.proj > 0 {
		arch, proj = "CLIPTextModelWithProjection", t.proj
	}
	return map[string]any{
		"architectures":           []string{arch},
		"bos_token_id":            tok.vocab[sdBOS],
		"eos_token_id":            tok.vocab[sdEOS],
		"pad_token_id":            tok.vocab[t.pad],
		"hidden_size":             t.dim,
		"layer_norm_eps":          json.Number("1e-05"),
		"max_position_embeddings": sdMaxLength,
		"model_type":              "clip_text_model",
		"num_hidden_layers":       t.layers,
		"projection_dim":          proj,
		"torch_dtype":             torchDType(s.float),
		"transformers_version":    "4.44.0",
		"vocab_size":              len(tok.vocab),
	}
}

// unetConfig is unet/config.json: the UNet2DConditionModel fields a pipeline reads.
func (s sdSpec) unetConfig(o SDOptions) map[string]any {
	c := map[string]any{
		"_class_name":         "UNet2DConditionModel",
		"_diffusers_version":  diffusersVersion,
		"sample_size":         o.SampleSize,
		"in_channels":         sdLatentChannels,
		"out_channels":        sdLatentChannels,
		"cross_attention_dim": s.crossDim(),
	}
	if s.optimum {
		c["addition_embed_type"] = nil
		c["addition_time_embed_dim"] = nil
		c["projection_class_embeddings_input_dim"] = nil
		c["time_cond_proj_dim"] = nil
	}
	if s.xl {
		c["addition_embed_type"] = "text_time"
		c["addition_time_embed_dim"] = sdAdditionTimeEmbDim
		c["projection_class_embeddings_input_dim"] = s.textEmbedsDim() + 6*sdAdditionTimeEmbDim
	}
	if s.lcm {
		c["time_cond_proj_dim"] = sdTimeCondDim
	}
	return c
}

// vaeConfig is vae_decoder/config.json and vae_encoder/config.json. block_out_channels is the
// real VAE's (4 entries: the VAE scales by 2^3 = 8); the synthetic VAE has no such blocks.
func (s sdSpec) vaeConfig(o SDOptions) map[string]any {
	c := map[string]any{
		"_class_name":        "AutoencoderKL",
		"_diffusers_version": diffusersVersion,
		"act_fn":             "silu",
		"block_out_channels": []int{128, 256, 512, 512},
		"in_channels":        3,
		"out_channels":       3,
		"latent_channels":    sdLatentChannels,
		"layers_per_block":   2,
		"norm_num_groups":    32,
		"sample_size":        sdVAEScale * o.SampleSize,
		"scaling_factor":     s.scaling,
	}
	if s.xl {
		c["force_upcast"] = true
	}
	return c
}
