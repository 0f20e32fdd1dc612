package schedule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
)

// ErrUnsupported is wrapped by the error ParseScheduler and LoadScheduler return when the file
// is sound but asks for a scheduler fksteer does not reproduce: an unknown class, or a setting
// that changes results and is not implemented (thresholding, clip_sample, SDE or third-order
// DPM-Solver, ...). The Scheduler returned beside such an error still holds the model's noise
// schedule, spacing and prediction type, so a caller given --scheduler goes on with
// s.With(kind), which drops the rejected settings:
//
//	s, err := schedule.LoadScheduler(path)
//	if errors.Is(err, schedule.ErrUnsupported) && flag != "" {
//		s, err = s.With(kind), nil
//	}
var ErrUnsupported = errors.New("scheduler setting fksteer does not reproduce")

// unsupportedError lists what a config asks for that fksteer does not reproduce.
type unsupportedError struct{ problems []string }

func (e *unsupportedError) Error() string {
	return strings.Join(e.problems, "; ") + "; --scheduler picks one fksteer reproduces, with this model's noise schedule: " + kindNames()
}

func (e *unsupportedError) Is(target error) bool { return target == ErrUnsupported }

// LoadScheduler reads a scheduler_config.json (a diffusers model folder's scheduler/ holds one)
// and parses it as ParseScheduler does. Errors name the path; an [ErrUnsupported] error comes
// with the parsed Scheduler as ParseScheduler's does.
func LoadScheduler(path string) (Scheduler, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Scheduler{}, fmt.Errorf("schedule: %w", err)
	}
	s, err := parseScheduler(data)
	if err != nil {
		return s, fmt.Errorf("schedule: %s: %w", path, err)
	}
	return s, nil
}

// ParseScheduler parses a scheduler_config.json's bytes. _class_name picks the kind, and each
// key the file leaves out (or writes as null) takes the default of that class's constructor,
// so the result is the scheduler diffusers' from_pretrained would build. The defaults that
// differ between classes:
//
//	                     ddim      ddpm      pndm      euler     euler-a   dpm++2m   lcm
//	beta_start/end       0.0001/0.02 (linear) in all but lcm                         0.00085/0.012
//	beta_schedule        linear    linear    linear    linear    linear    linear    scaled_linear
//	timestep_spacing     leading   leading   leading   linspace  linspace  linspace  leading (unused)
//	set_alpha_to_one     true      -         false     -         -         -         true (unused)
//	clip_sample          true      true      -         -         -         -         false
//
// In all: num_train_timesteps 1000, steps_offset 0, prediction_type "epsilon",
// use_karras_sigmas false, rescale_betas_zero_snr false, final_sigmas_type "zero",
// original_inference_steps 50, timestep_scaling 10. A "-" is a class without that setting; the
// value a file writes there anyway is kept for [Scheduler.With], as from_config passes it on.
//
// trained_betas, when a list, replaces the beta range (it must hold num_train_timesteps
// values). rescale_betas_zero_snr is applied exactly ([Discrete.RescaleZeroSNR]). Keys that
// matter only in diffusers (_diffusers_version, skip_prk_steps, clip_sample_range,
// dynamic_thresholding_ratio, sample_max_value, ...) are ignored, and so is every key the class
// has no setting for, as diffusers ignores them.
//
// Settings that change results but fksteer does not implement are an error that wraps
// [ErrUnsupported], names the key, its value and the way out (--scheduler): thresholding true;
// clip_sample true (including DDIM's and DDPM's default when the key is absent); variance_type
// other than fixed_small (DDPM) or null (DPM-Solver); algorithm_type other than dpmsolver++
// (or deis, which diffusers turns into it); solver_order other than 2; solver_type heun;
// lower_order_final false; euler_at_final true; use_lu_lambdas, use_flow_sigmas,
// use_exponential_sigmas or use_beta_sigmas true; a lambda_min_clipped that clips timesteps;
// interpolation_type other than linear; timestep_type continuous; and a class fksteer does not
// know. Malformed JSON, a value of the wrong type (naming the key), an unknown beta schedule,
// spacing, prediction type or final_sigmas_type, sigma_min or sigma_max with use_karras_sigmas
// (fksteer takes the Karras range from the table), and betas that do not make a schedule are
// plain errors, with a zero Scheduler.
//
// diffusers writes -Infinity for an unset lambda_min_clipped, which is not JSON; ParseScheduler
// accepts Infinity, -Infinity and NaN as Python's json module writes them.
func ParseScheduler(data []byte) (Scheduler, error) {
	s, err := parseScheduler(data)
	if err != nil {
		return s, fmt.Errorf("schedule: scheduler config: %w", err)
	}
	return s, nil
}

// parseScheduler is ParseScheduler without the prefix on errors.
func parseScheduler(data []byte) (Scheduler, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(allowNonFinite(data), &raw); err != nil {
		return Scheduler{}, fmt.Errorf("want a JSON object: %w", err)
	}
	if raw == nil { // the document was null
		return Scheduler{}, errors.New("want a JSON object, got null")
	}
	r := &configReader{raw: raw}
	var problems []string
	unsupported := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	var class string
	r.str("_class_name", &class)
	kind := kindOfClass(class)
	s := kindDefaults(kind)
	s.Class = class
	switch {
	case r.err != nil:
	case class == "":
		unsupported("no _class_name says which scheduler this is")
	case kind == "":
		unsupported("_class_name %q is not a scheduler fksteer reproduces", class)
	}
	unknown := kind == ""

	// Keys every class has (or passes on).
	r.integer("num_train_timesteps", &s.TrainSteps)
	if !r.float("beta_start", &s.BetaStart) && unknown {
		s.flags |= unsetBetaStart
	}
	if !r.float("beta_end", &s.BetaEnd) && unknown {
		s.flags |= unsetBetaEnd
	}
	var betaSchedule string
	if !r.str("beta_schedule", &betaSchedule) && unknown {
		s.flags |= unsetBetaSchedule
	}
	r.floats("trained_betas", &s.TrainedBetas)
	var spacing string
	if !r.str("timestep_spacing", &spacing) && unknown {
		s.flags |= unsetSpacing
	}
	r.integer("steps_offset", &s.StepsOffset)
	r.str("prediction_type", &s.Prediction)
	if !r.boolean("set_alpha_to_one", &s.SetAlphaToOne) && !hasAlphaToOne(kind) {
		s.flags |= unsetAlphaToOne
	}
	r.boolean("use_karras_sigmas", &s.Karras)
	r.boolean("rescale_betas_zero_snr", &s.RescaleZeroSNR)
	r.integer("original_inference_steps", &s.OriginalSteps)
	r.float("timestep_scaling", &s.TimestepScaling)
	finalSigmas := "zero"
	r.str("final_sigmas_type", &finalSigmas)
	var sigmaMin, sigmaMax float64
	hasSigmaRange := r.float("sigma_min", &sigmaMin)
	hasSigmaRange = r.float("sigma_max", &sigmaMax) || hasSigmaRange

	// Settings only some classes have, read only for those classes: diffusers ignores the rest.
	if kindIn(kind, DDIMScheduler, DDPMScheduler, DPMSolverScheduler, LCMScheduler) {
		var v bool
		if r.boolean("thresholding", &v); v {
			unsupported("thresholding true: fksteer does not threshold x0")
		}
	}
	if kindIn(kind, DDIMScheduler, DDPMScheduler, LCMScheduler) {
		v := kind != LCMScheduler
		if !r.boolean("clip_sample", &v) && v {
			unsupported("clip_sample left out, which %s takes as true (x0 clipped to [-1, 1]): fksteer does not clip x0; latent models write clip_sample false", class)
		} else if v {
			unsupported("clip_sample true: fksteer does not clip x0 to [-1, 1]")
		}
	}
	if kind == DDPMScheduler {
		v := "fixed_small"
		if r.str("variance_type", &v); v != "fixed_small" {
			unsupported("variance_type %q: fksteer's ddpm step uses fixed_small", v)
		}
	}
	if kind == EulerScheduler {
		v := "linear"
		if r.str("interpolation_type", &v); v != "linear" {
			unsupported("interpolation_type %q: fksteer interpolates sigma linearly", v)
		}
		v = "discrete"
		if r.str("timestep_type", &v); v != "discrete" {
			unsupported("timestep_type %q: fksteer gives the model discrete timesteps", v)
		}
	}
	if kindIn(kind, EulerScheduler, DPMSolverScheduler) {
		for _, key := range []string{"use_exponential_sigmas", "use_beta_sigmas"} {
			var v bool
			if r.boolean(key, &v); v {
				unsupported("%s true: fksteer builds linear or Karras sigmas only", key)
			}
		}
	}
	lambdaMin := math.Inf(-1)
	if kind == DPMSolverScheduler {
		var variance string
		if r.str("variance_type", &variance) {
			unsupported("variance_type %q: fksteer's dpm++2m takes a model without a learned variance (null)", variance)
		}
		algorithm := "dpmsolver++"
		if r.str("algorithm_type", &algorithm); algorithm != "dpmsolver++" && algorithm != "deis" {
			unsupported("algorithm_type %q: fksteer's dpm++2m is dpmsolver++", algorithm)
		}
		order := 2
		if r.integer("solver_order", &order); order != 2 {
			unsupported("solver_order %d: fksteer's dpm++2m is second order", order)
		}
		solver := "midpoint"
		if r.str("solver_type", &solver); solver == "heun" {
			unsupported("solver_type %q: fksteer's dpm++2m uses the midpoint update", solver)
		}
		lowerFinal, eulerFinal := true, false
		if r.boolean("lower_order_final", &lowerFinal); !lowerFinal {
			unsupported("lower_order_final false: fksteer's dpm++2m takes a first-order last step")
		}
		if r.boolean("euler_at_final", &eulerFinal); eulerFinal {
			unsupported("euler_at_final true: not implemented")
		}
		for _, key := range []string{"use_lu_lambdas", "use_flow_sigmas"} {
			var v bool
			if r.boolean(key, &v); v {
				unsupported("%s true: fksteer builds linear or Karras sigmas only", key)
			}
		}
		r.float("lambda_min_clipped", &lambdaMin)
	}
	if r.err != nil {
		return Scheduler{}, r.err
	}

	// Values that must make sense whatever the class.
	if s.TrainedBetas == nil {
		b, err := ParseBetaSchedule(betaSchedule)
		if betaSchedule == "" {
			b, err = s.BetaSchedule, nil
		}
		if err != nil {
			return Scheduler{}, fmt.Errorf("beta_schedule: %w", err)
		}
		s.BetaSchedule = b
	} else if betaSchedule != "" {
		s.BetaSchedule = BetaSchedule(betaSchedule) // unused: trained_betas replaces it, as in diffusers
	}
	if spacing != "" {
		sp, err := ParseSpacing(spacing)
		if err != nil {
			return Scheduler{}, fmt.Errorf("timestep_spacing: %w", err)
		}
		s.Spacing = sp
	}
	switch s.Prediction {
	case "epsilon", "v_prediction", "sample":
	default:
		return Scheduler{}, fmt.Errorf("prediction_type %q: want epsilon, v_prediction or sample", s.Prediction)
	}
	switch finalSigmas {
	case "zero", "sigma_min":
		s.FinalSigmasZero = finalSigmas == "zero"
	default:
		return Scheduler{}, fmt.Errorf("final_sigmas_type %q: want zero or sigma_min", finalSigmas)
	}
	if s.OriginalSteps < 1 {
		return Scheduler{}, fmt.Errorf("original_inference_steps %d: want at least 1", s.OriginalSteps)
	}
	if !(s.TimestepScaling > 0) || math.IsInf(s.TimestepScaling, 0) {
		return Scheduler{}, fmt.Errorf("timestep_scaling %v: want a finite value above 0", s.TimestepScaling)
	}
	if s.Karras && hasSigmaRange {
		return Scheduler{}, errors.New("sigma_min or sigma_max set with use_karras_sigmas: fksteer takes the Karras range from the training table; remove them or set them to null")
	}
	abar, err := s.Discrete.sigmaAlphasCumprod()
	if err != nil {
		return Scheduler{}, err
	}
	if n := lambdaClipped(abar, lambdaMin); n > 0 {
		unsupported("lambda_min_clipped %v clips the last %d training timesteps: not implemented", lambdaMin, n)
	}

	if len(problems) > 0 {
		if !unknown {
			problems[0] = class + ": " + problems[0]
		}
		return s, &unsupportedError{problems}
	}
	return s, nil
}

// lambdaClipped counts the training timesteps whose log-SNR half, lambda_t = log(alpha_t) -
// log(sigma_t), lies below lambdaMin: the ones DPMSolverMultistepScheduler cuts off the end of
// its range (torch.searchsorted on the flipped lambdas).
func lambdaClipped(abar []float64, lambdaMin float64) int {
	n := 0
	for _, a := range abar {
		if math.Log(math.Sqrt(a))-math.Log(math.Sqrt(1-a)) < lambdaMin {
			n++
		}
	}
	return n
}

// kindIn reports whether kind is one of kinds.
func kindIn(kind SchedulerKind, kinds ...SchedulerKind) bool {
	for _, k := range kinds {
		if kind == k {
			return true
		}
	}
	return false
}

// configReader decodes typed values from a config's keys, keeping the first error, which names
// the key. Each method leaves dst alone when the key is absent or null and reports whether it
// was there.
type configReader struct {
	raw map[string]json.RawMessage
	err error
}

func (r *configReader) value(key string) (json.RawMessage, bool) {
	v, ok := r.raw[key]
	if !ok || r.err != nil || string(v) == "null" {
		return nil, false
	}
	return v, true
}

func (r *configReader) fail(key, want string, v json.RawMessage) {
	got := string(v)
	if len(got) > 40 {
		got = got[:40] + "..."
	}
	r.err = fmt.Errorf("key %q: want %s, got %s", key, want, got)
}

func (r *configReader) str(key string, dst *string) bool {
	v, ok := r.value(key)
	if ok && json.Unmarshal(v, dst) != nil {
		r.fail(key, "a string", v)
	}
	return ok
}

func (r *configReader) boolean(key string, dst *bool) bool {
	v, ok := r.value(key)
	if ok && json.Unmarshal(v, dst) != nil {
		r.fail(key, "true or false", v)
	}
	return ok
}

func (r *configReader) integer(key string, dst *int) bool {
	v, ok := r.value(key)
	if !ok {
		return false
	}
	var f float64 // 1000 and 1000.0 both; diffusers' ints are small
	if json.Unmarshal(v, &f) != nil || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		r.fail(key, "an integer", v)
		return true
	}
	*dst = int(f)
	return true
}

func (r *configReader) float(key string, dst *float64) bool {
	v, ok := r.value(key)
	if !ok {
		return false
	}
	if f, isFloat := decodeFloat(v); isFloat {
		*dst = f
	} else {
		r.fail(key, "a number", v)
	}
	return true
}

func (r *configReader) floats(key string, dst *[]float64) bool {
	v, ok := r.value(key)
	if !ok {
		return false
	}
	var items []json.RawMessage
	if json.Unmarshal(v, &items) != nil {
		r.fail(key, "a list of numbers or null", v)
		return true
	}
	out := make([]float64, len(items))
	for i, item := range items {
		f, isFloat := decodeFloat(item)
		if !isFloat {
			r.fail(fmt.Sprintf("%s[%d]", key, i), "a number", item)
			return true
		}
		out[i] = f
	}
	*dst = out
	return true
}

// decodeFloat reads a JSON number or one of the non-finite words allowNonFinite quoted.
func decodeFloat(v json.RawMessage) (float64, bool) {
	var f float64
	if json.Unmarshal(v, &f) == nil {
		return f, true
	}
	switch string(v) {
	case `"Infinity"`:
		return math.Inf(1), true
	case `"-Infinity"`:
		return math.Inf(-1), true
	case `"NaN"`:
		return math.NaN(), true
	}
	return 0, false
}

// allowNonFinite quotes the bare words Infinity, -Infinity and NaN outside strings, which
// Python's json module writes for non-finite floats (diffusers' lambda_min_clipped is
// -Infinity) and encoding/json rejects, so that decodeFloat can read them.
func allowNonFinite(data []byte) []byte {
	var out bytes.Buffer
	inString, escaped := false, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		default:
			if word := nonFiniteAt(data[i:]); word != "" {
				out.WriteString(`"` + word + `"`)
				i += len(word) - 1
				continue
			}
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

func nonFiniteAt(b []byte) string {
	for _, word := range []string{"-Infinity", "Infinity", "NaN"} {
		if bytes.HasPrefix(b, []byte(word)) {
			return word
		}
	}
	return ""
}
