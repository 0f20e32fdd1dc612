package finetune_test

import (
	"context"
	"math"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// countingPipeline counts every call that runs a model: text encoding, denoising, decoding.
type countingPipeline struct {
	pipelines.Pipeline
	calls *atomic.Int64
}

func (c countingPipeline) Condition(ctx context.Context, st *pipelines.Stats, prompt string, o pipelines.CondOptions) (pipelines.Cond, error) {
	c.calls.Add(1)
	return c.Pipeline.Condition(ctx, st, prompt, o)
}

func (c countingPipeline) Predict(ctx context.Context, st *pipelines.Stats, x []float32, n int, l schedule.Level, cond pipelines.Cond, guidance float64, x0, eps []float32) error {
	c.calls.Add(1)
	return c.Pipeline.Predict(ctx, st, x, n, l, cond, guidance, x0, eps)
}

func (c countingPipeline) Decode(ctx context.Context, st *pipelines.Stats, x []float32, n int, dst pixels.Images) error {
	c.calls.Add(1)
	return c.Pipeline.Decode(ctx, st, x, n, dst)
}

// countingReward counts its scoring calls.
type countingReward struct {
	rewards.Reward
	calls *atomic.Int64
}

func (c countingReward) Score(ctx context.Context, imgs pixels.Images, prompt string, dst []float64) error {
	c.calls.Add(1)
	return c.Reward.Score(ctx, imgs, prompt, dst)
}

// TestNewGroupsRunsNoModel: NewGroups is a pure transformation of the run's result. With every
// model call of the run counted, turning the result into groups adds none, and the groups hold
// what the run knew: its conditioning, its final rewards with their parts, its log-weights and
// its genealogy (here FK's, which the ESS trace cross-checks).
func TestNewGroupsRunsNoModel(t *testing.T) {
	var modelCalls, rewardCalls atomic.Int64
	p := countingPipeline{openGlyphs(t), &modelCalls}
	r := countingReward{redness(t), &rewardCalls}
	cfg := sampler.Config{
		Prompt: `a red "A"`, Steps: 8, Rule: schedule.DDIMRule, Eta: 1, Images: 2, Particles: 4, Seed: 7, Record: true,
		Method: sampler.FK, Reward: r, Select: sampler.SelectAll, Potential: potentials.Diff,
		Lambda: potentials.Lambda{Value: 20}, Resampling: potentials.Schedule{Every: 2, Start: 2, End: 6},
	}
	res, err := sampler.Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	models, scores := modelCalls.Load(), rewardCalls.Load()
	groups, err := finetune.NewGroups(res, 5)
	if err != nil {
		t.Fatal(err)
	}
	if modelCalls.Load() != models || rewardCalls.Load() != scores {
		t.Fatalf("NewGroups made %d model and %d reward calls, want none", modelCalls.Load()-models, rewardCalls.Load()-scores)
	}
	if len(groups) != 2 || groups[1].ID != "g000006" || groups[1].Seed != 8 {
		t.Fatalf("%d groups, the second %s with seed %d", len(groups), groups[1].ID, groups[1].Seed)
	}
	resampled := 0
	for g, grp := range groups {
		if !slices.Equal(grp.Cond.Vector, res.Cond.Vector) || grp.Prompt != cfg.Prompt || grp.Scheduler.Method != sampler.FK || grp.Info.Hash != res.Model.Hash {
			t.Errorf("%s: cond, prompt, method or model differ from the run's", grp.ID)
		}
		var steps []int
		for _, p := range res.Stats.ESS {
			if p.Resampled[g] {
				steps = append(steps, p.Step)
			}
		}
		resampled += len(steps)
		for k, s := range grp.Samples {
			row := g*4 + k
			if s.Reward != res.Rewards[row] || s.LogWeight != res.LogWeights[row] || !math.IsNaN(s.Advantage) {
				t.Errorf("%s: reward %g, log-weight %g, advantage %g; run %g, %g", s.ID, s.Reward, s.LogWeight, s.Advantage, res.Rewards[row], res.LogWeights[row])
			}
			if len(s.Rewards) != 1 || s.Rewards[0].Name != "color" || s.Rewards[0].Score != s.Reward {
				t.Errorf("%s: parts %+v", s.ID, s.Rewards)
			}
			if len(s.Genealogy) != len(steps) {
				t.Fatalf("%s: genealogy %v, resampled at steps %v", s.ID, s.Genealogy, steps)
			}
			path := res.Trajectories.Path(row)
			for i, e := range s.Genealogy {
				if e[0] != steps[i] || g*4+e[1] != path[e[0]] {
					t.Errorf("%s: genealogy %v, steps %v, lineage %v", s.ID, s.Genealogy, steps, path)
				}
			}
		}
	}
	if resampled == 0 {
		t.Fatal("no group was resampled: the genealogy went unchecked")
	}
	// A result sampled without recording has no trajectories to make groups of.
	cfg.Record = false
	if res, err = sampler.Run(context.Background(), p, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := finetune.NewGroups(res, 0); err != finetune.ErrNotRecorded {
		t.Errorf("unrecorded run: %v, want ErrNotRecorded", err)
	}
}
