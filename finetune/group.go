package finetune

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// Sample is one final sample of a group and what is known about it beyond its tensors.
type Sample struct {
	// ID is "<group id>-<slot>", unique within a dataset.
	ID string
	// Slot is the sample's particle slot k within its group (its row in the group's tensors).
	Slot int
	// NoiseSlot is the slot whose random stream drew the sample's initial noise x_T: the root of
	// its ancestry, or 0 when the group shares x_T. With the group's Seed it reproduces x_T.
	NoiseSlot int
	// Reward is the training reward, NaN when there is none. Rewards breaks it down: one part
	// per term of a composite reward (rewards.Composite), else the reward itself with weight 1.
	Reward  float64
	Rewards []rewards.PartScore
	// Advantage is NaN until a mode's advantages are computed (see [GroupAdvantages]).
	Advantage float64
	// LogWeight is the final FK log-weight, normalised within the group (0 without FK).
	LogWeight float64
	// Genealogy holds, for each resampling of the group, [step, parent slot]: the slot whose
	// stepped state the sample's ancestor copied at that step.
	Genealogy [][2]int
	// ParentIDs are the samples, in step order, whose stored states (a shared x_T, or a
	// trajectory prefix shared through resampling or a shared prefix) this sample references.
	ParentIDs []string
}

// Group is one recorded group of samples of one prompt, in memory: what one record of a dataset
// holds. States and means are stored once per distinct (step, ancestor) and referenced by index,
// so a prefix that resampling copied into several samples exists once. Slices alias the
// recording of the run the group was made from.
type Group struct {
	// ID is "g" and the group's index in its dataset, zero-padded ("g000003"): GroupID(Index).
	ID    string
	Index int
	// Prompt and Cond are what the group was sampled for: the prompt and its conditioning.
	Prompt string
	Cond   pipelines.Cond
	// Seed is the group's seed: sample k drew its noise from the stream of (Seed, k).
	Seed uint64
	// Info describes the model, Scheduler how the group was sampled.
	Info      pipelines.Info
	Scheduler Scheduler
	// Steps is T and K the number of samples; Levels are the T+1 noise levels walked.
	Steps, K int
	Levels   []schedule.Level
	Samples  []Sample

	// States are the distinct states; StateIndex[k*(Steps+1)+s] is the state x at the start of
	// step s of sample k (s = Steps: the final sample).
	States     [][]float32
	StateIndex []int
	// Means are the distinct step means; MeanIndex[k*Steps+s] is the mean of sample k's step s.
	Means     [][]float32
	MeanIndex []int
	// Stds[s] is step s's standard deviation, the same for every sample.
	Stds []float64
	// LogProbs[k*Steps+s] is the log-probability of sample k's step s, as
	// [github.com/fksteer/fksteer/sampler/step.LogProb] computes it (NaN where Stds[s] is 0).
	LogProbs []float32
	// Lineage[k*Steps+s] is the slot whose step s belongs to sample k's trajectory.
	Lineage []int
	// Images holds the K final images, in [0, 1].
	Images pixels.Images
	// Features and RefFeatures are image features of the samples and of the prompt's reference
	// images (Adv-GRPO); References names the reference image files. Nil and empty otherwise.
	Features, RefFeatures *Features
	References            []string
}

// Scheduler records how a group was sampled, as the manifest reports it.
type Scheduler struct {
	Sampler  schedule.Rule `json:"sampler"`
	Eta      float64       `json:"eta"`
	Steps    int           `json:"steps"`
	Guidance float64       `json:"guidance"`
	// Levels is "flow" (x = (1-t) x0 + t noise), "vp" (alpha^2 + sigma^2 = 1) or "other".
	Levels       string               `json:"levels"`
	Prediction   pipelines.Prediction `json:"prediction"`
	Method       sampler.Method       `json:"method"`
	Particles    int                  `json:"particles"`
	SharedStart  bool                 `json:"shared_start,omitempty"`
	SharedPrefix int                  `json:"shared_prefix,omitempty"`
	FK           *FKSettings          `json:"fk,omitempty"`
	// Search holds the settings of the search methods beyond FK (svdd, beam, dts, dts-star).
	Search *sampler.Search `json:"search,omitempty"`
}

// FKSettings are the steering settings of an FK run.
type FKSettings struct {
	Potential    string  `json:"potential"`
	Lambda       float64 `json:"lambda"`
	LambdaStart  float64 `json:"lambda_start,omitempty"`
	LambdaRamp   string  `json:"lambda_ramp,omitempty"`
	Every        int     `json:"resample_every"`
	Start        int     `json:"resample_start"`
	End          int     `json:"resample_end"`
	ESSThreshold float64 `json:"ess_threshold,omitempty"`
	Resampler    string  `json:"resampler"`
}

// schedulerOf describes how cfg samples with a model of this info on these levels. It records
// the eta the steps used (a flow-sde run with eta 0 draws with schedule.DefaultFlowSDENoise).
func schedulerOf(cfg sampler.Config, info pipelines.Info, levels []schedule.Level) Scheduler {
	s := Scheduler{
		Sampler: cfg.Rule, Eta: cfg.Rule.Eta(cfg.Eta), Steps: cfg.Steps, Guidance: cfg.Guidance,
		Levels: levelKind(levels), Prediction: info.Prediction, Method: cfg.Method,
		Particles: cfg.Particles, SharedStart: cfg.SharedStart, SharedPrefix: cfg.SharedPrefix,
	}
	if s.Method == "" {
		s.Method = sampler.Base
	}
	switch cfg.Method {
	case sampler.Base, sampler.BestOfN, sampler.FK:
	default:
		search := cfg.Search
		s.Search = &search
	}
	if cfg.Method == sampler.FK {
		s.FK = &FKSettings{
			Potential: string(cfg.Potential), Lambda: cfg.Lambda.Value, LambdaStart: cfg.Lambda.Start,
			LambdaRamp: string(cfg.Lambda.Ramp), Every: cfg.Resampling.Every, Start: cfg.Resampling.Start,
			End: cfg.Resampling.End, ESSThreshold: cfg.Resampling.ESSThreshold, Resampler: string(cfg.Resampler),
		}
	}
	return s
}

// levelKind names the family of a grid of levels.
func levelKind(levels []schedule.Level) string {
	flow, vp := true, true
	for _, l := range levels {
		flow = flow && math.Abs(l.Alpha+l.Sigma-1) < 1e-9
		vp = vp && math.Abs(l.Alpha*l.Alpha+l.Sigma*l.Sigma-1) < 1e-6
	}
	switch {
	case flow:
		return "flow"
	case vp:
		return "vp"
	}
	return "other"
}

// ErrNotRecorded is returned by [NewGroups] for a result sampled without Config.Record.
var ErrNotRecorded = errors.New("the run was not recorded: set sampler.Config.Record")

// NewGroups turns a recorded run into one Group per sampler group, from the result alone: the
// conditioning, the final rewards and their parts, the genealogy and the settings are the ones
// the run recorded (sampler.Result), so nothing is encoded, scored or sampled again. Group g
// gets index first+g. Advantages are left NaN; without a reward in the run, rewards are NaN and
// have no parts. It fails, changing nothing, with ErrNotRecorded for a run sampled without
// Config.Record, and with an error for a result whose parts do not fit together.
func NewGroups(res *sampler.Result, first int) ([]*Group, error) {
	tr := res.Trajectories
	if tr == nil {
		return nil, ErrNotRecorded
	}
	cfg := res.Settings
	k := cfg.Particles
	if k <= 0 || tr.Rows%k != 0 || res.All.N != tr.Rows || len(res.Rewards) != tr.Rows {
		return nil, fmt.Errorf("result of %d rows and %d images does not match its %d particles per group: a result made by sampler.Run", tr.Rows, res.All.N, k)
	}
	info := res.Model
	events := resamplingSteps(res.Events, tr.Rows/k)
	groups := make([]*Group, tr.Rows/k)
	for g := range groups {
		grp := newGroup(tr, cfg, g, k, first+g, events[g])
		grp.Prompt, grp.Cond, grp.Info = cfg.Prompt, res.Cond, info
		grp.Scheduler = schedulerOf(cfg, info, tr.Levels)
		grp.Images = pixels.NewImages(k, res.All.C, res.All.H, res.All.W)
		copy(grp.Images.Pix, res.All.Pix[g*k*res.All.Len():(g+1)*k*res.All.Len()])
		for slot := range grp.Samples {
			row := g*k + slot
			s := &grp.Samples[slot]
			s.LogWeight, s.Reward = res.LogWeights[row], res.Rewards[row]
			if res.Parts != nil {
				s.Rewards = res.Parts[row]
			}
		}
		groups[g] = grp
	}
	return groups, nil
}

// resamplingSteps lists, for each of n groups, the steps at which the genealogy records a
// resampling of it (FK's, and the end of a shared prefix), in order.
func resamplingSteps(events []particles.Event, n int) [][]int {
	steps := make([][]int, n)
	for _, e := range events {
		steps[e.Group] = append(steps[e.Group], e.Step)
	}
	return steps
}

// newGroup gathers group g's samples from a recording, storing each distinct state and mean once.
//
// A state is identified by the step that produced it: x_{s+1} of sample k is the stepped state of
// the row that took step s on k's path (Lineage), so samples whose paths meet at step s share
// x_{s+1} and everything before it. x_T is identified by its root row, or by slot 0 when the group
// shares x_T. A mean is identified by its step and row.
func newGroup(tr *sampler.Trajectories, cfg sampler.Config, g, k, index int, events []int) *Group {
	T, rows := tr.Steps, tr.Rows
	grp := &Group{
		ID: GroupID(index), Index: index, Seed: tr.Seeds[g], Steps: T, K: k,
		Levels:     tr.Levels,
		Samples:    make([]Sample, k),
		StateIndex: make([]int, k*(T+1)),
		MeanIndex:  make([]int, k*T),
		Stds:       tr.Stds,
		LogProbs:   make([]float32, k*T),
		Lineage:    make([]int, k*T),
	}
	stateAt := map[int]int{} // identity -> index in States
	meanAt := map[int]int{}
	var owner []int // owner[i]: the first slot that stored state i
	for slot := range k {
		i := g*k + slot
		path := tr.Path(i)
		s := &grp.Samples[slot]
		s.ID = fmt.Sprintf("%s-%02d", grp.ID, slot)
		s.Slot = slot
		s.Advantage = math.NaN()
		s.NoiseSlot = path[0] - g*k
		root := path[0]
		if cfg.SharedStart {
			root, s.NoiseSlot = g*k, 0
		}
		for st := 0; st <= T; st++ {
			id := root
			x := tr.State(T, i)
			if st > 0 {
				id = st*rows + path[st-1]
			}
			if st < T {
				x = tr.State(st, path[st])
			}
			idx, ok := stateAt[id]
			if !ok {
				idx = len(grp.States)
				stateAt[id] = idx
				grp.States = append(grp.States, x)
				owner = append(owner, slot)
			}
			grp.StateIndex[slot*(T+1)+st] = idx
			if o := owner[idx]; o != slot {
				if pid := grp.Samples[o].ID; !slices.Contains(s.ParentIDs, pid) {
					s.ParentIDs = append(s.ParentIDs, pid)
				}
			}
		}
		for st := range T {
			id := st*rows + path[st]
			idx, ok := meanAt[id]
			if !ok {
				idx = len(grp.Means)
				meanAt[id] = idx
				grp.Means = append(grp.Means, tr.Mean(st, path[st]))
			}
			grp.MeanIndex[slot*T+st] = idx
			grp.LogProbs[slot*T+st] = tr.LogProbs[st*rows+path[st]]
			grp.Lineage[slot*T+st] = path[st] - g*k
		}
		for _, e := range events {
			s.Genealogy = append(s.Genealogy, [2]int{e, path[e] - g*k})
		}
	}
	return grp
}

// Latents returns sample k's states x_T .. x_0 (Steps+1 slices sharing the group's storage).
func (g *Group) Latents(k int) [][]float32 {
	out := make([][]float32, g.Steps+1)
	for s := range out {
		out[s] = g.States[g.StateIndex[k*(g.Steps+1)+s]]
	}
	return out
}

// StepMeans returns the means of sample k's steps (Steps slices sharing the group's storage).
func (g *Group) StepMeans(k int) [][]float32 {
	out := make([][]float32, g.Steps)
	for s := range out {
		out[s] = g.Means[g.MeanIndex[k*g.Steps+s]]
	}
	return out
}

// Rewards returns every sample's training reward, in slot order.
func (g *Group) Rewards() []float64 {
	out := make([]float64, len(g.Samples))
	for i, s := range g.Samples {
		out[i] = s.Reward
	}
	return out
}

// SetAdvantages stores adv[k] as sample k's advantage. It panics if len(adv) != K.
func (g *Group) SetAdvantages(adv []float64) {
	if len(adv) != len(g.Samples) {
		panic(fmt.Sprintf("finetune: %d advantages for %d samples", len(adv), len(g.Samples)))
	}
	for i := range g.Samples {
		g.Samples[i].Advantage = adv[i]
	}
}

// Tensor names, documented in docs/datasets.md. In a shard each is prefixed by the group's ID and
// a slash ("g000003/latents").
const (
	KeyLatents        = "latents"
	KeyLatentIndex    = "latent_index"
	KeyMeans          = "means"
	KeyMeanIndex      = "mean_index"
	KeyStds           = "stds"
	KeyLogProbs       = "log_probs"
	KeyTimesteps      = "timesteps"
	KeyAlphas         = "alphas"
	KeySigmas         = "sigmas"
	KeyLineage        = "lineage"
	KeyPromptEmbeds   = "prompt_embeds"
	KeyNegativeEmbeds = "negative_prompt_embeds"
	KeyPooledEmbeds   = "pooled_prompt_embeds"
	KeyNegativePooled = "negative_pooled_prompt_embeds"
	KeyClassLabels    = "class_labels"
	KeyNullClass      = "null_class_labels"
	KeyFeatureCLS     = "dino_cls"
	KeyFeaturePatches = "dino_patches"
	KeyRefCLS         = "ref_dino_cls"
	KeyRefPatches     = "ref_dino_patches"
)

// Tensors returns the group's tensors under their plain names (no group prefix), in the dtypes
// docs/datasets.md lists: float32 everywhere, except latents in float16 when half is set.
// Trainers rebuild sample k's trajectory as latents[latent_index[k]], shape [Steps+1, C, H, W].
func (g *Group) Tensors(half bool) []Tensor {
	T, k := g.Steps, g.K
	c, h, w := g.Info.Channels, g.Info.Height, g.Info.Width
	latents := make([]float32, 0, len(g.States)*c*h*w)
	for _, x := range g.States {
		latents = append(latents, x...)
	}
	means := make([]float32, 0, len(g.Means)*c*h*w)
	for _, m := range g.Means {
		means = append(means, m...)
	}
	stds := make([]float32, T)
	timesteps := make([]float32, T)
	for s := range T {
		stds[s] = float32(g.Stds[s])
		timesteps[s] = float32(g.Levels[s].Time)
	}
	alphas := make([]float32, T+1)
	sigmas := make([]float32, T+1)
	for s, l := range g.Levels {
		alphas[s], sigmas[s] = float32(l.Alpha), float32(l.Sigma)
	}
	lat := Float32Tensor(KeyLatents, []int{len(g.States), c, h, w}, latents)
	if half {
		lat = Float16Tensor(KeyLatents, lat.Shape, latents)
	}
	out := []Tensor{
		lat,
		Int64Tensor(KeyLatentIndex, []int{k, T + 1}, ints64(g.StateIndex)),
		Float32Tensor(KeyMeans, []int{len(g.Means), c, h, w}, means),
		Int64Tensor(KeyMeanIndex, []int{k, T}, ints64(g.MeanIndex)),
		Float32Tensor(KeyStds, []int{T}, stds),
		Float32Tensor(KeyLogProbs, []int{k, T}, g.LogProbs),
		Float32Tensor(KeyTimesteps, []int{T}, timesteps),
		Float32Tensor(KeyAlphas, []int{T + 1}, alphas),
		Float32Tensor(KeySigmas, []int{T + 1}, sigmas),
		Int64Tensor(KeyLineage, []int{k, T}, ints64(g.Lineage)),
	}
	switch g.Cond.Kind {
	case pipelines.VectorCond:
		// diffusers' shapes: [1, 77, D] for token sequences (Stable Diffusion), [1, D] otherwise.
		shape := []int{1, len(g.Cond.Vector)}
		if t := g.Cond.Tokens; t > 0 {
			shape = []int{1, t, len(g.Cond.Vector) / t}
		}
		out = append(out,
			Float32Tensor(KeyPromptEmbeds, shape, g.Cond.Vector),
			Float32Tensor(KeyNegativeEmbeds, shape, g.Cond.NullVector))
		if len(g.Cond.Pooled) > 0 {
			out = append(out,
				Float32Tensor(KeyPooledEmbeds, []int{1, len(g.Cond.Pooled)}, g.Cond.Pooled),
				Float32Tensor(KeyNegativePooled, []int{1, len(g.Cond.NullPooled)}, g.Cond.NullPooled))
		}
	case pipelines.ClassCond:
		out = append(out,
			Int64Tensor(KeyClassLabels, []int{1}, []int64{g.Cond.Class}),
			Int64Tensor(KeyNullClass, []int{1}, []int64{g.Cond.Null}))
	}
	out = append(out, g.Features.tensors(KeyFeatureCLS, KeyFeaturePatches)...)
	out = append(out, g.RefFeatures.tensors(KeyRefCLS, KeyRefPatches)...)
	return out
}

func ints64(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}
