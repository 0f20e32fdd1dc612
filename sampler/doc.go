// Package sampler turns a denoiser's predictions into diffusion steps and steers particles
// through them.
//
// The step rules themselves are the pure functions of package sampler/step, named by
// schedule.Rule. [Run] drives a pipeline through them: from pure noise, or from a noised
// initial state for image-to-image ([Config].Init), with or without steering.
package sampler
