package finetune

import "github.com/fksteer/fksteer/internal/enum"

// Mode is the kind of dataset an export writes, named after the trainer that reads it.
type Mode string

// Dataset modes. Every mode records full trajectories with log-probabilities; they differ in
// how samples are drawn and related (see docs/datasets.md).
const (
	// DDPO: N independent samples per prompt; advantages (r - mean)/(std + 1e-6) over all the
	// samples of the same prompt (DDPO's per-prompt stat tracker).
	DDPO Mode = "ddpo"
	// D3PO: n samples per prompt sharing the initial noise x_T, taking different stochastic
	// paths; preference pairs in pairs.jsonl.
	D3PO Mode = "d3po"
	// PRDP: n samples per prompt; pairs with both rewards and their difference in pairs.jsonl.
	PRDP Mode = "prdp"
	// GRPO (Flow-GRPO): groups of G samples per prompt, optionally sharing x_T or a trajectory
	// prefix; advantages (r - group mean)/(group std + 1e-4), or with the global std.
	GRPO Mode = "grpo"
	// AdvGRPO: GRPO plus the prompt's reference images and image features (DINO) of samples and
	// references.
	AdvGRPO Mode = "adv-grpo"
	// Steered: what FK steering produced, every particle with its final log-weight and
	// genealogy, for trainers that reweight.
	Steered Mode = "steered"
)

var modes = []Mode{DDPO, D3PO, PRDP, GRPO, AdvGRPO, Steered}

// ParseMode turns a mode name into a Mode, by [enum.Parse]'s rule (case-insensitive,
// surrounding space ignored).
func ParseMode(s string) (Mode, error) { return enum.Parse("dataset mode", s, modes...) }

// Pairs reports whether the mode writes preference pairs (pairs.jsonl).
func (m Mode) Pairs() bool { return m == D3PO || m == PRDP }

// advantage returns the epsilon of the mode's advantages, and false for modes without any.
func (m Mode) advantage() (float64, bool) {
	switch m {
	case DDPO:
		return DDPOEpsilon, true
	case GRPO, AdvGRPO:
		return GRPOEpsilon, true
	}
	return 0, false
}

// DefaultSamples is the number of samples per prompt a mode draws when not told: 8 for the
// group and steering modes (Flow-GRPO's smallest group), 2 for the pair modes (one pair).
func (m Mode) DefaultSamples() int {
	if m.Pairs() {
		return 2
	}
	return 8
}
