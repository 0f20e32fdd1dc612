// Package particles holds the population of a sequential Monte Carlo (particle) sampler: the
// batched particle states, their log-weights, the resampling schemes that turn weights into
// ancestor indices, the genealogy those resamplings leave behind, and per-particle random streams
// that make a run independent of batch size and worker count.
//
// It is the bookkeeping half of Feynman-Kac steering. It does not know about models, rewards,
// potentials or step rules: states are plain []float32 rows, weights plain []float64, and the
// caller (the steering loop in sampler/) decides when to resample and what the weights mean.
//
// # Layout
//
// A [Population] holds G independent groups (one per prompt or image) of K particles each; row
// r = g*K + k is particle k of group g. Resampling never crosses groups. Everything a particle
// carries lives in per-row fields of the population (the state X, and any fields callers
// register: reward history, accumulated potentials, a multistep sampler's memory), so one
// [Population.Resample] copies a particle's whole state and nothing can fall out of step.
//
// # Weights
//
// All weight maths is in log space ([LogSumExp], [NormalizedWeights], [ESS]). A NaN log-weight
// is read as -Inf (weight zero) everywhere in this package, so one bad reward removes one
// particle rather than poisoning the group.
//
// # Hot paths
//
// [Scheme.Resample], [Population.Resample], [Streams.FillNormal] and the weight functions do not
// allocate: buffers are allocated by the constructors and outputs go into caller-owned slices.
// Nothing here is safe for concurrent use unless its documentation says so.
package particles
