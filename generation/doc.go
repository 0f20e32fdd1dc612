// Package generation is what every front end of fksteer runs: a Spec describes one generation
// (model, prompt, sampling and steering settings, reward, seed, outputs), an Env resolves specs
// into runs (opening each model and reward once, from a registry of architectures), and a Run
// samples its images and encodes them with their settings. fksteer's CLI, batch jobs, exports,
// benchmarks and server are flag parsing and printing over this package; a Go program gets the
// same behaviour in a few lines (see the examples).
//
// A Spec round-trips through the "parameters" chunk of the PNGs a run writes
// (Run.Parameters, ParseParameters), so an image records how to make it again.
package generation
