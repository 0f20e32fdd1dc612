package schedule

import "github.com/fksteer/fksteer/internal/enum"

// Rule names a step rule: how a sampler goes from one level of a grid to the next. It is the one
// vocabulary of step rules: --sampler and a model's default sampler parse into it ([ParseRule]),
// a Scheduler names the one its diffusers class takes ([Scheduler.Rule]), and package
// sampler/step runs it. It lives here, below both, because the rules step between Levels.
type Rule string

// The step rules a run can use. The strings are the names --sampler accepts.
const (
	// EulerRule is the deterministic step (DDIM with eta = 0): for flows, x' = x - (t-t') v.
	EulerRule Rule = "euler"
	// DDIMRule is DDIM with the run's eta; on flow levels, the marginal-preserving flow step.
	DDIMRule Rule = "ddim"
	// DDPMRule is the ancestral posterior q(x'|x, x0) (DDIM with eta = 1, computed directly).
	DDPMRule Rule = "ddpm"
	// EulerARule is k-diffusion's Euler-ancestral step with the run's eta.
	EulerARule Rule = "euler-a"
	// FlowSDERule is Flow-GRPO's SDE step for rectified flows on every step, the last (onto
	// t' = 0) included, as Flow-GRPO samples: its final images keep a little noise and every
	// step has a log-probability. Eta is the noise level a; 0 means DefaultFlowSDENoise.
	FlowSDERule Rule = "flow-sde"
	// FlowSDECleanRule is FlowSDERule except at a step onto clean data (t' = 0), which lands on
	// the prediction x0 (std 0, no log-probability): clean final images, for users who want
	// them more than Flow-GRPO's exact sampler, whose last step a trainer could use. Eta as
	// FlowSDERule.
	FlowSDECleanRule Rule = "flow-sde-clean"
	// DPMpp2MRule is DPM-Solver++(2M), diffusers' default multistep ODE solver for Stable
	// Diffusion; deterministic, eta is ignored. Each particle's previous x0 prediction travels
	// with it in the population.
	DPMpp2MRule Rule = "dpm++2m"
	// LCMRule is the Latent Consistency Model step: the prediction brought to the next level
	// with all of that level's noise drawn fresh; eta is ignored.
	LCMRule Rule = "lcm"
)

// Rules lists every step rule, in the order messages list them.
func Rules() []Rule {
	return []Rule{EulerRule, DDIMRule, DDPMRule, EulerARule, FlowSDERule, FlowSDECleanRule, DPMpp2MRule, LCMRule}
}

// ParseRule turns a sampler name into a Rule, by [enum.Parse]'s rule (case-insensitive,
// surrounding space ignored), or returns an error that lists the valid names.
func ParseRule(s string) (Rule, error) { return enum.Parse("sampler", s, Rules()...) }

// DefaultFlowSDENoise is Flow-GRPO's default noise level a (sde_step_with_logprob's
// noise_level), which the flow-sde rules use when eta is 0, so that they run on models that
// recommend no eta. A flow-sde step with a = 0 would be the Euler step, which EulerRule names.
const DefaultFlowSDENoise = 0.7

// Eta returns the eta that steps of rule r take when eta is configured: eta itself, except that
// the flow-sde rules read 0 (unset) as DefaultFlowSDENoise. sampler's Config.Validate stores it
// in Config.Eta, so what a run records is what it used.
func (r Rule) Eta(eta float64) float64 {
	if (r == FlowSDERule || r == FlowSDECleanRule) && eta == 0 {
		return DefaultFlowSDENoise
	}
	return eta
}

// Stochastic reports whether the rule draws fresh noise with this eta. FK steering needs it:
// a deterministic sampler gives resampled copies nothing to diverge with.
func (r Rule) Stochastic(eta float64) bool {
	switch r {
	case EulerRule, DPMpp2MRule:
		return false
	case DDPMRule, LCMRule:
		return true
	}
	return r.Eta(eta) > 0
}
