package schedule

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/fksteer/fksteer/internal/enum"
)

// SchedulerKind names a diffusers scheduler family fksteer reproduces. It decides two things: the
// grid of levels a run walks ([Scheduler.Levels]) and the step rule that walks it by default
// ([Scheduler.Rule]).
type SchedulerKind string

const (
	// DDIMScheduler is diffusers' DDIMScheduler (Song et al. 2021).
	DDIMScheduler SchedulerKind = "ddim"
	// DDPMScheduler is diffusers' DDPMScheduler (Ho et al. 2020), ancestral sampling with the
	// "fixed_small" posterior variance.
	DDPMScheduler SchedulerKind = "ddpm"
	// PNDMScheduler is diffusers' PNDMScheduler, which Stable Diffusion 1.x ships; fksteer runs it as
	// DDIM with eta 0 on the same timesteps (see [Scheduler.Levels] for why that is the equivalent).
	PNDMScheduler SchedulerKind = "pndm"
	// EulerScheduler is diffusers' EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2 without
	// churn), which SDXL and SD-Turbo ship.
	EulerScheduler SchedulerKind = "euler"
	// EulerAncestralScheduler is diffusers' EulerAncestralDiscreteScheduler.
	EulerAncestralScheduler SchedulerKind = "euler-a"
	// DPMSolverScheduler is diffusers' DPMSolverMultistepScheduler in its default form:
	// DPM-Solver++ (Lu et al. 2022), second order, multistep, midpoint update.
	DPMSolverScheduler SchedulerKind = "dpm++2m"
	// LCMScheduler is diffusers' LCMScheduler for latent consistency models (Luo et al. 2023).
	LCMScheduler SchedulerKind = "lcm"
)

// schedulerClasses pairs each kind with its diffusers class, in the order messages list them.
var schedulerClasses = []struct {
	kind  SchedulerKind
	class string
}{
	{DDIMScheduler, "DDIMScheduler"},
	{DDPMScheduler, "DDPMScheduler"},
	{PNDMScheduler, "PNDMScheduler"},
	{EulerScheduler, "EulerDiscreteScheduler"},
	{EulerAncestralScheduler, "EulerAncestralDiscreteScheduler"},
	{DPMSolverScheduler, "DPMSolverMultistepScheduler"},
	{LCMScheduler, "LCMScheduler"},
}

// ParseSchedulerKind turns a --scheduler value into a SchedulerKind, by [enum.Parse]'s rule
// (case-insensitive, surrounding space ignored). It accepts the kinds' own names (ddim, ddpm,
// pndm, euler, euler-a, dpm++2m, lcm) and the diffusers class names (DDIMScheduler,
// DDPMScheduler, PNDMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
// DPMSolverMultistepScheduler, LCMScheduler). Anything else, other diffusers schedulers included
// (LMSDiscreteScheduler, UniPCMultistepScheduler, ...), is an error that lists the valid names.
func ParseSchedulerKind(s string) (SchedulerKind, error) {
	kinds := make([]SchedulerKind, len(schedulerClasses))
	classes := make(map[string]SchedulerKind, len(schedulerClasses))
	for i, c := range schedulerClasses {
		kinds[i], classes[c.class] = c.kind, c.kind
	}
	return enum.ParseAliases("scheduler", s, classes, kinds...)
}

// kindOfClass is the kind of a diffusers class name, or "" for a class fksteer does not reproduce.
// Unlike ParseSchedulerKind it takes class names only: a config's _class_name is never "ddim".
func kindOfClass(class string) SchedulerKind {
	for _, c := range schedulerClasses {
		if class == c.class {
			return c.kind
		}
	}
	return ""
}

// kindNames lists the kinds and their classes for messages.
func kindNames() string {
	kinds := make([]string, len(schedulerClasses))
	classes := make([]string, len(schedulerClasses))
	for i, c := range schedulerClasses {
		kinds[i], classes[i] = string(c.kind), c.class
	}
	return strings.Join(kinds, ", ") + " (or the diffusers class names " + strings.Join(classes, ", ") + ")"
}

// Defaults of the kind-specific settings, the same in every diffusers class that has them.
const (
	defaultOriginalSteps   = 50   // LCMScheduler original_inference_steps
	defaultTimestepScaling = 10.0 // LCMScheduler timestep_scaling
)

// Scheduler is a diffusers scheduler as fksteer runs it: the fields of a scheduler_config.json
// that decide where sampling steps go, parsed once ([ParseScheduler], [LoadScheduler]) and
// recorded with a run. Fields a file leaves out hold the defaults of its class's constructor,
// so a folder rebuilds the scheduler diffusers would build from it.
//
// To build one in code, start from the shared fields and let [Scheduler.With] fill in the
// kind's defaults:
//
//	s := schedule.Scheduler{Discrete: schedule.DefaultSD(), Prediction: "epsilon"}.With(schedule.EulerScheduler)
type Scheduler struct {
	Kind  SchedulerKind
	Class string // _class_name as read; "" when built in code. With leaves it, so it records what the file asked for
	Discrete
	Prediction string // prediction_type as written: "epsilon", "v_prediction" or "sample"

	// OriginalSteps is LCM's original_inference_steps (default 50): the length of the
	// distillation schedule the few inference timesteps are picked from. Zero means the default.
	OriginalSteps int
	// TimestepScaling is LCM's timestep_scaling (default 10), the scale of the consistency
	// boundary condition ([Scheduler.LCMBoundary]). Zero means the default.
	TimestepScaling float64
	// FinalSigmasZero is final_sigmas_type "zero" (true, diffusers' default) as opposed to
	// "sigma_min": whether Euler's and DPM-Solver's last step lands on clean data or stops at the
	// training table's smallest sigma. Its zero value is "sigma_min"; ParseScheduler and With
	// fill in the default.
	FinalSigmasZero bool

	flags configFlags
}

// configFlags records, for [Scheduler.With], which values are not settled by the config alone.
type configFlags uint8

const (
	// Shared keys an unknown class's config left out: each diffusers class has its own defaults,
	// so the kind chosen with With supplies them.
	unsetBetaStart configFlags = 1 << iota
	unsetBetaEnd
	unsetBetaSchedule
	unsetSpacing
	// set_alpha_to_one left out by a class that has no such setting (DDIM, PNDM and LCM have it,
	// with defaults true, false, true).
	unsetAlphaToOne
	// Kind-specific values that came from a config (its keys, or its class's defaults) rather
	// than from a Scheduler literal's zero values.
	resolvedFinalSigmas
	resolvedLCM
)

// kindDefaults is the Scheduler diffusers' constructor of kind's class builds with no arguments.
// An empty kind gets the values most classes share.
func kindDefaults(kind SchedulerKind) Scheduler {
	s := Scheduler{
		Kind: kind,
		Discrete: Discrete{
			TrainSteps:   1000,
			BetaStart:    0.0001,
			BetaEnd:      0.02,
			BetaSchedule: Linear,
			Spacing:      Leading,
		},
		Prediction:      "epsilon",
		OriginalSteps:   defaultOriginalSteps,
		TimestepScaling: defaultTimestepScaling,
		FinalSigmasZero: true,
		flags:           resolvedFinalSigmas | resolvedLCM,
	}
	switch kind {
	case DDIMScheduler:
		s.SetAlphaToOne = true
	case EulerScheduler, EulerAncestralScheduler, DPMSolverScheduler:
		s.Spacing = Linspace
	case LCMScheduler:
		s.BetaStart, s.BetaEnd, s.BetaSchedule = 0.00085, 0.012, ScaledLinear
		s.SetAlphaToOne = true
	}
	return s
}

// hasAlphaToOne reports whether kind's diffusers class has a set_alpha_to_one setting.
func hasAlphaToOne(kind SchedulerKind) bool {
	return kind == DDIMScheduler || kind == PNDMScheduler || kind == LCMScheduler
}

// hasFinalSigmas reports whether kind's diffusers class has a final_sigmas_type setting.
func hasFinalSigmas(kind SchedulerKind) bool {
	return kind == EulerScheduler || kind == DPMSolverScheduler
}

// With returns the scheduler of another kind on the same model, as --scheduler asks: what
// diffusers' NewScheduler.from_config(old.config) builds. It keeps the noise schedule (betas,
// training steps, zero-SNR rescaling), spacing, steps offset, prediction type, set_alpha_to_one
// and use_karras_sigmas, and Class, which records what the file asked for. Settings only some
// classes have follow from_config's rules: a value the old kind had carries over to a new kind
// that has the same setting (final_sigmas_type between euler and dpm++2m); one the new kind
// has and the old did not comes from the file if it wrote it, and otherwise is the new kind's
// default (set_alpha_to_one is then true for ddim and lcm, false for pndm); one the new kind
// lacks is dropped. Settings fksteer rejects ([ErrUnsupported]) are never held, so With is
// how a caller recovers from them. With of the same kind returns s unchanged.
func (s Scheduler) With(kind SchedulerKind) Scheduler {
	if kind == s.Kind {
		return s
	}
	old, def := s.Kind, kindDefaults(kind)
	s.Kind = kind
	if s.flags&unsetBetaStart != 0 {
		s.BetaStart = def.BetaStart
	}
	if s.flags&unsetBetaEnd != 0 {
		s.BetaEnd = def.BetaEnd
	}
	if s.flags&unsetBetaSchedule != 0 {
		s.BetaSchedule = def.BetaSchedule
	}
	if s.flags&unsetSpacing != 0 {
		s.Spacing = def.Spacing
	}
	s.flags &^= unsetBetaStart | unsetBetaEnd | unsetBetaSchedule | unsetSpacing

	switch {
	case hasAlphaToOne(old) && !hasAlphaToOne(kind):
		s.flags |= unsetAlphaToOne // from_config drops it; a later kind that has it starts afresh
	case hasAlphaToOne(kind) && s.flags&unsetAlphaToOne != 0:
		s.SetAlphaToOne = def.SetAlphaToOne
		s.flags &^= unsetAlphaToOne
	}

	dropped := hasFinalSigmas(old) && !hasFinalSigmas(kind)
	if dropped || !hasFinalSigmas(old) && s.flags&resolvedFinalSigmas == 0 {
		s.FinalSigmasZero = def.FinalSigmasZero
		s.flags |= resolvedFinalSigmas
	}
	dropped = old == LCMScheduler
	if dropped || kind == LCMScheduler && s.flags&resolvedLCM == 0 {
		s.OriginalSteps, s.TimestepScaling = def.OriginalSteps, def.TimestepScaling
		s.flags |= resolvedLCM
	}
	return s
}

// Levels returns the n+1 levels that n inference steps of this kind walk, noisiest first: level
// i (i < n) is where the denoiser is called at step i, with Time its timestep input, and each step
// goes from one level to the next. The last level has Time -1 (never evaluated). Each grid is
// the one the diffusers class's set_timesteps and step compute (in float64 where diffusers
// rounds to float32):
//
//   - ddim: [Discrete.Levels] without Karras (DDIMScheduler has no use_karras_sigmas): the
//     spaced timesteps at sqrt(abar_t), ending at abar = 1 if SetAlphaToOne and abar_0 if not.
//   - ddpm: the same timesteps, but the last step always lands on abar = 1, clean data
//     (DDPMScheduler's `one`; it has no set_alpha_to_one), and each step goes to the next
//     timestep in the list, as DDPMScheduler.previous_timestep does.
//   - pndm: DDIM's grid for the same spacing, offset and set_alpha_to_one (PNDMScheduler's
//     default is false). With skip_prk_steps, PNDM is PLMS: on these timesteps it takes
//     DDIM's deterministic step (its _get_prev_sample is DDIM's update with eta 0), fed not the
//     current eps but a 4th-order Adams-Bashforth combination of the last four (a Heun-like
//     2-evaluation start, then orders 2 and 3 while the history fills). fksteer keeps no model
//     outputs across steps (resampling would desync them), so it runs the first-order member
//     of that family, DDIM with eta 0, on PLMS's timesteps: the same grid, endpoints and
//     deterministic update, and the documented equivalent of PNDM. Without skip_prk_steps
//     diffusers would warm up with Runge-Kutta steps; the mapping is the same either way.
//     PNDMScheduler has no rescale_betas_zero_snr and ignores it; so does this grid.
//   - euler: [Discrete.EulerLevels]: interpolated sigmas at the spaced timesteps (fractional
//     for linspace), Karras sigmas between the interpolated ends if Karras is set; the last
//     level is sigma 0, or the training table's sigma(0) when FinalSigmasZero is false.
//   - euler-a: [Discrete.EulerLevels] without Karras (EulerAncestralDiscreteScheduler has no
//     use_karras_sigmas nor final_sigmas_type), ending at sigma 0.
//   - dpm++2m: DPMSolverMultistepScheduler.set_timesteps. Integer timesteps, n of them, taken
//     from n+1 candidates: linspace: round(linspace(0, T-1, n+1)) reversed, without its last
//     (0); leading: arange(n+1) * (T // (n+1)) reversed, without its last, plus steps_offset;
//     trailing: round(arange(T, 0, -T/n)) - 1 (as [Timesteps]). Sigma at each is the training
//     table's, sqrt((1-abar)/abar). With Karras, the n sigmas are Karras' rho = 7 spacing
//     between the FULL table's ends, sigma(T-1) and sigma(0) (unlike Euler, which uses the
//     spaced ends), and each Time is the rounded fractional timestep whose log-sigma matches
//     (truncated instead of rounded for squaredcos_cap_v2, as diffusers' int64 cast does there).
//     The last level is sigma 0 or, if FinalSigmasZero is false, sigma(0). Unlike
//     numpy's arange, trailing always gives exactly n timesteps (see [Timesteps]).
//   - lcm: LCMScheduler.set_timesteps: with k = T // OriginalSteps, the distillation schedule
//     is k-1, 2k-1, ..., OriginalSteps*k - 1 (19, 39, ..., 999 for T = 1000 and 50); reversed,
//     it is sampled at floor(linspace(0, OriginalSteps, n, endpoint=False)), so 4 steps give
//     999, 759, 499, 259. Each step goes to the next timestep's abar, and the last lands on
//     clean data: LCM's last step returns its denoised estimate. LCM ignores spacing, steps
//     offset and set_alpha_to_one. n must be at most OriginalSteps.
//
// With RescaleZeroSNR, the VP grids (ddim, ddpm, lcm) can start at abar = 0, Alpha 0, where an
// epsilon-predicting model cannot give x0 (diffusers divides by zero there); Levels returns an
// error for that combination. Euler and DPM-Solver use abar = 2^-24 at the last training
// timestep instead, as diffusers does.
//
// A Scheduler without a kind (from a config of an unsupported class, or a literal) is an error:
// choose one with With.
func (s Scheduler) Levels(n int) ([]Level, error) {
	var (
		levels []Level
		err    error
		d      = s.Discrete
	)
	switch s.Kind {
	case DDIMScheduler, PNDMScheduler:
		d.Karras = false
		if s.Kind == PNDMScheduler {
			d.RescaleZeroSNR = false
		}
		levels, err = d.Levels(n)
	case DDPMScheduler:
		d.Karras = false
		d.SetAlphaToOne = true
		levels, err = d.Levels(n)
	case EulerScheduler:
		if levels, err = d.EulerLevels(n); err == nil && !s.FinalSigmasZero {
			levels[n], err = d.sigmaMinLevel()
		}
	case EulerAncestralScheduler:
		d.Karras = false
		levels, err = d.EulerLevels(n)
	case DPMSolverScheduler:
		levels, err = s.dpmLevels(n)
	case LCMScheduler:
		levels, err = s.lcmLevels(n)
	case "":
		return nil, errors.New("schedule: the scheduler has no kind; pick one with With (--scheduler)")
	default:
		return nil, fmt.Errorf("schedule: unknown scheduler kind %q; valid: %s", s.Kind, kindNames())
	}
	if err != nil {
		return nil, err
	}
	if levels[0].Alpha == 0 && (s.Prediction == "epsilon" || s.Prediction == "") {
		return nil, fmt.Errorf("schedule: %s starts at timestep %v, where rescale_betas_zero_snr makes abar 0 and an epsilon-predicting model cannot give x0; zero-SNR models predict v (prediction_type v_prediction)",
			s.Kind, levels[0].Time)
	}
	return levels, nil
}

// sigmaMinLevel is the final level of final_sigmas_type "sigma_min": the training table's
// smallest sigma, sigma(0).
func (d Discrete) sigmaMinLevel() (Level, error) {
	abar, err := d.sigmaAlphasCumprod()
	if err != nil {
		return Level{}, err
	}
	return sigmaLevel(-1, math.Sqrt((1-abar[0])/abar[0])), nil
}

// dpmLevels is DPMSolverMultistepScheduler's grid; see Levels.
func (s Scheduler) dpmLevels(n int) ([]Level, error) {
	d := s.Discrete
	abar, err := d.sigmaAlphasCumprod()
	if err != nil {
		return nil, err
	}
	T := len(abar)
	if n <= 0 || n > T {
		return nil, fmt.Errorf("schedule: %d inference steps: want 1..%d (the training steps)", n, T)
	}
	table := make([]float64, T)
	logTable := make([]float64, T)
	for t, a := range abar {
		table[t] = math.Sqrt((1 - a) / a)
		logTable[t] = math.Log(table[t])
	}
	times := make([]float64, n)
	var sigmas []float64
	if d.Karras {
		if err := checkSpacing(d.Spacing); err != nil { // diffusers spaces first, then replaces
			return nil, err
		}
		sigmas = karrasSigmas(n, table[0], table[T-1])
		for i, sigma := range sigmas {
			t := sigmaToT(sigma, logTable)
			if d.BetaSchedule == SquaredCosCapV2 {
				times[i] = math.Trunc(t) // diffusers skips .round() for cosine; int64() truncates
			} else {
				times[i] = math.RoundToEven(t)
			}
		}
	} else {
		ts, err := dpmTimesteps(d.Spacing, T, n, d.StepsOffset)
		if err != nil {
			return nil, err
		}
		sigmas = make([]float64, n)
		for i, t := range ts {
			times[i], sigmas[i] = float64(t), table[t]
		}
	}
	levels := make([]Level, 0, n+1)
	for i, sigma := range sigmas {
		levels = append(levels, sigmaLevel(times[i], sigma))
	}
	final := 0.0
	if !s.FinalSigmasZero {
		final = table[0]
	}
	return append(levels, sigmaLevel(-1, final)), nil
}

// dpmTimesteps is DPMSolverMultistepScheduler.set_timesteps' spacing: n timesteps out of n+1
// candidates for linspace and leading (the dropped one is 0), trailing as [Timesteps]. It is an
// error unless they are n distinct timesteps in 0..T-1 (too many steps repeat timesteps; a large
// offset leaves the table).
func dpmTimesteps(spacing Spacing, T, n, offset int) ([]int, error) {
	ts := make([]int, n)
	switch spacing {
	case Linspace:
		lin := linspace(0, float64(T-1), n+1)
		for i := range ts {
			ts[i] = int(math.RoundToEven(lin[n-i]))
		}
	case Leading:
		ratio := T / (n + 1)
		for i := range ts {
			ts[i] = (n-i)*ratio + offset
		}
	case Trailing:
		return Timesteps(Trailing, T, n, 0)
	default:
		return nil, checkSpacing(spacing)
	}
	for i, t := range ts {
		if t < 0 || t > T-1 || i > 0 && t >= ts[i-1] {
			return nil, fmt.Errorf("schedule: dpm++2m with %s spacing, steps offset %d and %d steps gives timesteps %d..%d: want %d distinct timesteps in 0..%d",
				spacing, offset, n, ts[0], ts[n-1], n, T-1)
		}
	}
	return ts, nil
}

// lcmLevels is LCMScheduler's grid; see Levels.
func (s Scheduler) lcmLevels(n int) ([]Level, error) {
	abar, err := s.Discrete.AlphasCumprod()
	if err != nil {
		return nil, err
	}
	T := len(abar)
	orig := s.OriginalSteps
	if orig == 0 {
		orig = defaultOriginalSteps
	}
	if orig < 1 || orig > T {
		return nil, fmt.Errorf("schedule: lcm original_inference_steps %d: want 1..%d (the training steps)", orig, T)
	}
	if n <= 0 || n > orig {
		return nil, fmt.Errorf("schedule: %d inference steps: LCM takes 1..%d (original_inference_steps), a subset of its distillation schedule", n, orig)
	}
	k := T / orig
	step := float64(orig) / float64(n) // numpy.linspace(0, orig, n, endpoint=False) is i*step
	levels := make([]Level, 0, n+1)
	for i := range n {
		j := int(math.Floor(float64(i) * step))
		t := (orig-j)*k - 1 // the reversed schedule's j-th entry: (orig-1-j)+1 times k, minus 1
		levels = append(levels, vpLevel(float64(t), abar[t]))
	}
	return append(levels, vpLevel(-1, 1)), nil
}

// Rule returns the step rule this kind runs by default and its eta: ddim and pndm run DDIMRule
// with eta 0 (pndm as explained under [Scheduler.Levels]), ddpm DDPMRule with 1, euler EulerRule
// with 0, euler-a EulerARule with 1, dpm++2m DPMpp2MRule with 0 and lcm LCMRule with 0. LCM's
// fresh noise between steps is part of its rule, not an eta. A Scheduler without a known kind
// returns ("", 0).
func (s Scheduler) Rule() (rule Rule, eta float64) {
	switch s.Kind {
	case DDIMScheduler, PNDMScheduler:
		return DDIMRule, 0
	case DDPMScheduler:
		return DDPMRule, 1
	case EulerScheduler:
		return EulerRule, 0
	case EulerAncestralScheduler:
		return EulerARule, 1
	case DPMSolverScheduler:
		return DPMpp2MRule, 0
	case LCMScheduler:
		return LCMRule, 0
	}
	return "", 0
}

// LCMBoundary returns the consistency model's boundary-condition scalings at timestep t,
// LCMScheduler.get_scalings_for_boundary_condition_discrete: with sigma_data = 0.5 and
// scaled = t * TimestepScaling,
//
//	c_skip = sigma_data^2 / (scaled^2 + sigma_data^2)
//	c_out  = scaled / sqrt(scaled^2 + sigma_data^2)
//
// The denoised estimate is c_out*x0 + c_skip*x, so at t = 0 it is x itself (c_skip 1, c_out 0),
// the consistency condition, and at large t it is the model's x0.
func (s Scheduler) LCMBoundary(t float64) (cSkip, cOut float64) {
	const sigmaData = 0.5
	scaling := s.TimestepScaling
	if scaling == 0 {
		scaling = defaultTimestepScaling
	}
	scaled := t * scaling
	d2 := scaled*scaled + sigmaData*sigmaData
	return sigmaData * sigmaData / d2, scaled / math.Sqrt(d2)
}
