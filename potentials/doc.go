// Package potentials turns reward histories into Feynman-Kac potentials and decides when a
// population is resampled.
//
// At an evaluation step t each particle's x0 prediction has been scored with a reward r_t. A
// [Potential] converts it into a log-potential log G_t, adds it to the particle's accumulated
// log-weight in the [particles.Population], and updates the particle's reward history, which
// lives in the population (so resampling copies it with the particle):
//
//	diff:      log G = lambda_t r_t - lambda_prev r_prev   (r_prev = 0 before any reward)
//	max:       log G = lambda_t max(r_t, m_prev)           (m_prev = -Inf before any reward)
//	sum:       log G = lambda_t (r_t + s_prev)             (s_prev = 0 before any reward)
//	immediate: log G = lambda_t r_t
//
// and at the final step, for every kind, log G = lambda_final r_final - LogApplied, where
// LogApplied is the sum of the log-potentials already applied along the particle's ancestry.
// The product of all potentials along any ancestry is then exactly exp(lambda_final r(x0)), so
// the target stays p(x0) exp(lambda r(x0)) whatever the kind (DESIGN.md section 4).
//
// A [Lambda] gives lambda_t, constant or ramped over the evaluation steps, and a [Schedule]
// says which sampler steps evaluate potentials and whether an evaluation resamples (every time,
// or adaptively when the effective sample size falls below a threshold). Log-weights that are
// not resampled away accumulate in the population until the next resampling.
//
// This package does not compute rewards, run models or step samplers; it knows particles only
// through [particles.Population]. All maths is float64 and in log space.
package potentials
