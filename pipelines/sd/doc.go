// Package sd runs Stable Diffusion exported to ONNX as a [pipelines.Pipeline]: SD 1.x and 2.x
// (epsilon and v-prediction), guidance-distilled SD-Turbo, SDXL and LCM-distilled UNets, read
// from the folders `optimum-cli export onnx`, Olive and diffusers' older conversion script write:
//
//	model_index.json                 pipeline class and parts
//	scheduler/scheduler_config.json  noise schedule and sampler (see schedule.Scheduler)
//	tokenizer/, tokenizer_2/         CLIP BPE vocab.json + merges.txt (tokenizer_2: SDXL)
//	text_encoder/, text_encoder_2/   model.onnx (+ model.onnx_data or weights.pb), config.json
//	unet/                            model.onnx (+ external weights), config.json
//	vae_decoder/, vae_encoder/       model.onnx, config.json (scaling_factor)
//
// Every tensor's name, element type (float32 or float16; int32 or int64 token ids and
// timesteps) and rank is read from the models' own metadata, so one code path serves all the
// export styles. Classifier-free guidance runs as one UNet batch of 2n rows, [negative; prompt];
// guidance-distilled models skip it at guidance <= 1 and LCM UNets receive guidance as their
// timestep_cond embedding instead.
//
// The pipeline works on latents in the variance-preserving form the sampler uses,
// x = Alpha*x0 + Sigma*eps. For the sigma-space schedulers (Euler, DPM-Solver) diffusers keeps
// x/Alpha and divides by sqrt(sigma^2+1) before each UNet call; that quotient is exactly x, so
// both feed the UNet the same numbers.
package sd
