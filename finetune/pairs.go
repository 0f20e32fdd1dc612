package finetune

import (
	"math"

	"github.com/fksteer/fksteer/internal/enum"
)

// PairPolicy says which pairs of a group's samples the pair modes (D3PO, PRDP) write.
type PairPolicy string

// Pair policies.
const (
	// AllPairs pairs every two samples of a group: (i, j) for i < j, n(n-1)/2 pairs.
	AllPairs PairPolicy = "all"
	// AdjacentPairs pairs consecutive samples: (i, i+1), n-1 pairs.
	AdjacentPairs PairPolicy = "adjacent"
)

// ParsePairPolicy turns "all" or "adjacent" into a PairPolicy, by [enum.Parse]'s rule
// (case-insensitive, surrounding space ignored).
func ParsePairPolicy(s string) (PairPolicy, error) {
	return enum.Parse("pair policy", s, AllPairs, AdjacentPairs)
}

// Preference values of a [Pair].
const (
	PreferA = 1.0
	PreferB = 0.0
	Tie     = 0.5
)

// Pair is two samples of one group with their rewards, one row of pairs.jsonl.
type Pair struct {
	A      string `json:"a"`
	B      string `json:"b"`
	Group  string `json:"group"`
	Prompt string `json:"prompt"`
	// RewardA and RewardB are the training rewards, RewardDiff = RewardA - RewardB (PRDP
	// regresses its log-ratio difference onto RewardDiff / beta).
	RewardA    Float `json:"reward_a"`
	RewardB    Float `json:"reward_b"`
	RewardDiff Float `json:"reward_diff"`
	// Preferred is 1 when A has the higher reward, 0 when B has, and 0.5 on a tie (|diff| <=
	// the tie tolerance); Tie says the same as a boolean, for trainers that count a tie as 0
	// (D3PO) or drop it.
	Preferred float64 `json:"preferred"`
	Tie       bool    `json:"tie"`
}

// MakePairs returns the pairs of g's samples under policy, preferring the higher training reward;
// rewards closer than tol are a tie. Pairs with a non-finite reward are left out: no preference
// can be read from them.
func MakePairs(g *Group, policy PairPolicy, tol float64) []Pair {
	ids := make([]string, len(g.Samples))
	for i, s := range g.Samples {
		ids[i] = s.ID
	}
	return pairsOf(g.ID, g.Prompt, ids, g.Rewards(), policy, tol)
}

func pairsOf(group, prompt string, ids []string, rewards []float64, policy PairPolicy, tol float64) []Pair {
	var out []Pair
	add := func(i, j int) {
		a, b := rewards[i], rewards[j]
		if !finite(a) || !finite(b) {
			return
		}
		p := Pair{A: ids[i], B: ids[j], Group: group, Prompt: prompt, RewardA: Float(a), RewardB: Float(b), RewardDiff: Float(a - b)}
		switch d := a - b; {
		case math.Abs(d) <= tol:
			p.Preferred, p.Tie = Tie, true
		case d > 0:
			p.Preferred = PreferA
		default:
			p.Preferred = PreferB
		}
		out = append(out, p)
	}
	for i := range ids {
		if policy == AdjacentPairs {
			if i+1 < len(ids) {
				add(i, i+1)
			}
			continue
		}
		for j := i + 1; j < len(ids); j++ {
			add(i, j)
		}
	}
	return out
}
