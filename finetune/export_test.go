package finetune_test

import (
	"context"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/sampler/step"
	"github.com/fksteer/fksteer/schedule"
)

// checkLogProbs recomputes every stored log-probability of every sample from the exported
// x_t, x_{t-1}, mean and std (all float32) and requires exact equality: a trainer that reads
// these tensors and computes DDPO's convention gets the stored number.
func checkLogProbs(t *testing.T, d *finetune.Dataset) {
	t.Helper()
	stochastic := 0
	for _, r := range d.Rows {
		tr, err := d.Trajectory(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.Latents) != len(tr.Means)+1 || len(tr.LogProbs) != len(tr.Means) {
			t.Fatalf("%s: %d latents, %d means, %d log-probs", r.ID, len(tr.Latents), len(tr.Means), len(tr.LogProbs))
		}
		for s := range tr.Means {
			want := float32(step.LogProb(tr.Latents[s+1], tr.Means[s], float64(tr.Stds[s])))
			got := tr.LogProbs[s]
			if tr.Stds[s] == 0 {
				if !math.IsNaN(float64(got)) {
					t.Errorf("%s step %d: deterministic step has log-prob %g, want NaN", r.ID, s, got)
				}
				continue
			}
			stochastic++
			if got != want {
				t.Errorf("%s step %d: stored log-prob %v, recomputed %v", r.ID, s, got, want)
			}
		}
	}
	if stochastic == 0 {
		t.Fatal("no stochastic step was checked")
	}
}

// checkSettingsLevels checks that dataset.json names the family of levels every manifest row
// names, and that it is want.
func checkSettingsLevels(t *testing.T, d *finetune.Dataset, want string) {
	t.Helper()
	var s struct {
		Scheduler finetune.Scheduler `json:"scheduler"`
	}
	if err := d.Settings(&s); err != nil {
		t.Fatal(err)
	}
	if s.Scheduler.Levels != want {
		t.Errorf("dataset.json settings.scheduler.levels %q, want %q", s.Scheduler.Levels, want)
	}
	for _, r := range d.Rows {
		if r.Scheduler.Levels != s.Scheduler.Levels {
			t.Errorf("%s: levels %q, dataset.json %q", r.ID, r.Scheduler.Levels, s.Scheduler.Levels)
		}
	}
}

// TestExportFlowSDELogProbsOnEveryStep exports with flow-sde and no eta, as Flow-GRPO samples:
// the noise level is Flow-GRPO's default 0.7 (recorded as such in the manifest and dataset.json),
// and every step, the last included, has a positive std and a finite log-probability that a
// trainer recomputes exactly from the exported tensors.
func TestExportFlowSDELogProbsOnEveryStep(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.GRPO, out, `a red "A"`)
	o.Sampling.Rule, o.Sampling.Eta = schedule.FlowSDERule, 0
	export(t, p, o)
	d := openDataset(t, out)
	checkLogProbs(t, d)
	checkSettingsLevels(t, d, "flow")
	var s struct {
		Scheduler finetune.Scheduler `json:"scheduler"`
	}
	if err := d.Settings(&s); err != nil {
		t.Fatal(err)
	}
	if s.Scheduler.Sampler != schedule.FlowSDERule || s.Scheduler.Eta != schedule.DefaultFlowSDENoise {
		t.Errorf("dataset.json scheduler %+v: want flow-sde with eta 0.7", s.Scheduler)
	}
	for _, r := range d.Rows {
		if r.Scheduler.Sampler != schedule.FlowSDERule || r.Scheduler.Eta != schedule.DefaultFlowSDENoise {
			t.Errorf("%s: scheduler %+v, want flow-sde with eta 0.7", r.ID, r.Scheduler)
		}
		tr, err := d.Trajectory(r)
		if err != nil {
			t.Fatal(err)
		}
		for s, lp := range tr.LogProbs {
			if !(tr.Stds[s] > 0) || math.IsNaN(float64(lp)) || math.IsInf(float64(lp), 0) {
				t.Errorf("%s step %d of %d: std %v log-prob %v, want a draw with a finite log-probability", r.ID, s, len(tr.LogProbs), tr.Stds[s], lp)
			}
		}
	}
}

// TestExportGRPO exports three prompts in groups of four into shards that roll over, and checks
// what a GRPO trainer relies on: every sample once, trajectories identical to a direct recorded
// run, exact log-probabilities, advantages (r - group mean)/(group std + 1e-4) with mean 0 in
// every group, the groups file, and the images.
func TestExportGRPO(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.GRPO, out, `a red "A"`, `"B" on navy`, `the word cat`)
	o.ShardSize = 1 << 20 // about one group: forces roll-over
	sum := export(t, p, o)
	if sum.Samples != 12 || !sum.Complete || len(sum.Shards) < 2 {
		t.Fatalf("summary %+v: want 12 samples in several shards, complete", sum)
	}
	d := openDataset(t, out)
	if !d.Info.Complete || d.Info.Samples != 12 || d.Info.Groups != 3 || d.Info.LogProbConvention != finetune.LogProbConvention {
		t.Errorf("dataset.json %+v", d.Info)
	}
	for _, sh := range sum.Shards {
		st, err := os.Stat(filepath.Join(out, sh))
		if err != nil {
			t.Fatal(err)
		}
		s, _ := d.Shard(sh)
		if groups := strings.Split(s.Metadata["groups"], ","); st.Size() > o.ShardSize && len(groups) > 1 {
			t.Errorf("shard %s is %d bytes with %d groups, over the %d limit", sh, st.Size(), len(groups), o.ShardSize)
		}
	}
	checkLogProbs(t, d)
	checkSettingsLevels(t, d, "flow")

	// Group 1 is prompt 1 seeded with Seed+1: a direct recorded run gives the same trajectories.
	res, err := sampler.Run(context.Background(), p, o.Config(1))
	if err != nil {
		t.Fatal(err)
	}
	// The configuration Export runs is the run a user would write by hand.
	cfg := sampler.Config{Prompt: o.Prompts[1], Steps: 8, Rule: schedule.DDIMRule, Eta: 1, Seed: 101, Images: 1, Particles: 4, Record: true}
	direct, err := sampler.Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for k := range 4 {
		r := d.Rows[4+k]
		tr, err := d.Trajectory(r)
		if err != nil {
			t.Fatal(err)
		}
		states, _, _, lps := res.Trajectories.Trajectory(k)
		if want, _, _, _ := direct.Trajectories.Trajectory(k); !slices.EqualFunc(states, want, slices.Equal) {
			t.Fatalf("%s: the export's configuration samples other states than a direct run", r.ID)
		}
		for s := range states {
			if !slices.Equal(tr.Latents[s], states[s]) {
				t.Fatalf("%s: state %d differs from the direct run", r.ID, s)
			}
		}
		if !slices.EqualFunc(tr.LogProbs, lps, func(a, b float32) bool { return a == b || a != a && b != b }) {
			t.Errorf("%s: log-probs %v, direct run %v", r.ID, tr.LogProbs, lps)
		}
	}

	groups, err := finetune.ReadGroups(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 3 {
		t.Fatalf("%d groups", len(groups))
	}
	for gi, g := range groups {
		rows := d.Rows[gi*4 : gi*4+4]
		var rs []float64
		var sumAdv float64
		for k, r := range rows {
			if r.Group != g.Group || r.Index != k || g.Samples[k] != r.ID || r.Prompt != o.Prompts[gi] {
				t.Fatalf("row %+v does not match group %+v", r, g)
			}
			rs = append(rs, float64(r.Reward))
			sumAdv += float64(r.Advantage)
			if float64(r.Rewards["color"]) != float64(r.Reward) {
				t.Errorf("%s: reward %v, color part %v", r.ID, r.Reward, r.Rewards["color"])
			}
		}
		var mean, ss float64
		for _, x := range rs {
			mean += x / 4
		}
		for _, x := range rs {
			ss += (x - mean) * (x - mean) / 4
		}
		for k, r := range rows {
			want := (rs[k] - mean) / (math.Sqrt(ss) + 1e-4)
			if math.Abs(float64(r.Advantage)-want) > 1e-12 || float64(g.Advantages[k]) != float64(r.Advantage) {
				t.Errorf("%s: advantage %v (groups file %v), want %v", r.ID, r.Advantage, g.Advantages[k], want)
			}
		}
		if math.Abs(sumAdv) > 1e-9 {
			t.Errorf("group %s: advantages sum to %g, want 0", g.Group, sumAdv)
		}
		if math.Abs(float64(g.Mean)-mean) > 1e-12 || ss == 0 {
			t.Errorf("group %s: mean %v, want %v (variance %g)", g.Group, g.Mean, mean, ss)
		}
	}
	seen := map[string]bool{}
	for _, r := range d.Rows {
		if seen[r.ID] {
			t.Fatalf("sample %s twice", r.ID)
		}
		seen[r.ID] = true
		if r.Scheduler.Sampler != schedule.DDIMRule || r.Scheduler.Eta != 1 || r.Scheduler.Steps != 8 || r.Scheduler.Levels != "flow" || r.ModelHash == "" || r.Model != "glyphs" {
			t.Errorf("%s: scheduler %+v, model %s %s", r.ID, r.Scheduler, r.Model, r.ModelHash)
		}
		f, err := os.Open(filepath.Join(out, r.Image))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil || img.Bounds().Dx() != 32 {
			t.Errorf("%s: image %s: %v", r.ID, r.Image, err)
		}
		for _, key := range []string{finetune.KeyLatents, finetune.KeyLatentIndex, finetune.KeyMeans, finetune.KeyMeanIndex, finetune.KeyStds, finetune.KeyLogProbs, finetune.KeyTimesteps, finetune.KeySigmas, finetune.KeyLineage, finetune.KeyPromptEmbeds, finetune.KeyNegativeEmbeds} {
			if r.Tensors[key] != r.Group+"/"+key {
				t.Errorf("%s: tensor %s is %q", r.ID, key, r.Tensors[key])
			}
		}
	}
}

// TestGlobalStdAdvantages: with the global std, advantages still have mean 0 in every group but
// are scaled by the standard deviation of all rewards.
func TestGlobalStdAdvantages(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.GRPO, out, `"A"`, `a green "K"`)
	o.GlobalStd = true
	export(t, p, o)
	d := openDataset(t, out)
	all := make([]float64, len(d.Rows))
	for i, r := range d.Rows {
		all[i] = float64(r.Reward)
	}
	var mean, ss float64
	for _, x := range all {
		mean += x / float64(len(all))
	}
	for _, x := range all {
		ss += (x - mean) * (x - mean) / float64(len(all))
	}
	std := math.Sqrt(ss)
	for g := range 2 {
		rows := d.Rows[4*g : 4*g+4]
		var gm, sumAdv float64
		for _, r := range rows {
			gm += float64(r.Reward) / 4
		}
		for _, r := range rows {
			want := (float64(r.Reward) - gm) / (std + 1e-4)
			if math.Abs(float64(r.Advantage)-want) > 1e-12 {
				t.Errorf("%s: advantage %v, want %v", r.ID, r.Advantage, want)
			}
			sumAdv += float64(r.Advantage)
		}
		if math.Abs(sumAdv) > 1e-9 {
			t.Errorf("group %d: advantages sum to %g", g, sumAdv)
		}
	}
}

// TestDDPOAdvantagesPoolEachPrompt: DDPO normalises over every sample of the same prompt, so a
// prompt listed twice is one statistic over both of its groups, with epsilon 1e-6.
func TestDDPOAdvantagesPoolEachPrompt(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.DDPO, out, `"Q"`, `a blue "Z"`, `"Q"`)
	o.Samples = 3
	export(t, p, o)
	d := openDataset(t, out)
	pooled := slices.Concat(d.Rows[0:3], d.Rows[6:9])
	var mean, ss, sumAdv float64
	for _, r := range pooled {
		mean += float64(r.Reward) / 6
	}
	for _, r := range pooled {
		ss += (float64(r.Reward) - mean) * (float64(r.Reward) - mean) / 6
	}
	for _, r := range pooled {
		want := (float64(r.Reward) - mean) / (math.Sqrt(ss) + 1e-6)
		if math.Abs(float64(r.Advantage)-want) > 1e-9 {
			t.Errorf("%s: advantage %v, want %v", r.ID, r.Advantage, want)
		}
		sumAdv += float64(r.Advantage)
	}
	if math.Abs(sumAdv) > 1e-9 || d.Rows[0].Reward == d.Rows[6].Reward {
		t.Errorf("pooled advantages sum to %g; rewards %v %v", sumAdv, d.Rows[0].Reward, d.Rows[6].Reward)
	}
	checkLogProbs(t, d)
}

// TestD3POPairsShareInitialNoise: every pair's two samples start from bit-identical x_T (stored
// once), take different stochastic paths, and the preference follows the rewards.
func TestD3POPairsShareInitialNoise(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.D3PO, out, `"A"`, `"B" on navy`)
	o.Samples = 3
	export(t, p, o)
	d := openDataset(t, out)
	pairs, err := finetune.ReadPairs(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 6 { // 3 pairs per prompt
		t.Fatalf("%d pairs, want 6", len(pairs))
	}
	byID := map[string]finetune.Row{}
	for _, r := range d.Rows {
		byID[r.ID] = r
	}
	for _, pr := range pairs {
		a, b := byID[pr.A], byID[pr.B]
		if a.Group != b.Group || pr.Group != a.Group {
			t.Fatalf("pair %+v crosses groups", pr)
		}
		ta, err := d.Trajectory(a)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := d.Trajectory(b)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(bitsOf(ta.Latents[0]), bitsOf(tb.Latents[0])) {
			t.Errorf("pair %s/%s: x_T differs", pr.A, pr.B)
		}
		if slices.Equal(ta.Latents[1], tb.Latents[1]) {
			t.Errorf("pair %s/%s: the first step is identical; the paths must differ", pr.A, pr.B)
		}
		ra, rb := float64(a.Reward), float64(b.Reward)
		want := finetune.Tie
		if ra > rb {
			want = finetune.PreferA
		} else if ra < rb {
			want = finetune.PreferB
		}
		if pr.Preferred != want || float64(pr.RewardA) != ra || float64(pr.RewardB) != rb || float64(pr.RewardDiff) != ra-rb || pr.Tie != (want == finetune.Tie) {
			t.Errorf("pair %+v for rewards %v, %v", pr, ra, rb)
		}
		if !math.IsNaN(float64(a.Advantage)) {
			t.Errorf("%s: d3po rows carry no advantage, got %v", a.ID, a.Advantage)
		}
	}
	for _, r := range d.Rows {
		if r.NoiseSlot != 0 || (r.Slot > 0 && !slices.Equal(r.ParentIDs, []string{r.Group + "-00"})) {
			t.Errorf("%s: noise slot %d, parents %v", r.ID, r.NoiseSlot, r.ParentIDs)
		}
	}
	checkLogProbs(t, d)
}

func bitsOf(v []float32) []uint32 {
	out := make([]uint32, len(v))
	for i, x := range v {
		out[i] = math.Float32bits(x)
	}
	return out
}

// TestPRDPAdjacentPairs: adjacent pairs are (0,1), (1,2), ... with both rewards and a - b.
func TestPRDPAdjacentPairs(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.PRDP, out, `"G"`)
	o.Pairs = finetune.AdjacentPairs
	export(t, p, o)
	pairs, err := finetune.ReadPairs(out)
	if err != nil {
		t.Fatal(err)
	}
	d := openDataset(t, out)
	if len(pairs) != 3 {
		t.Fatalf("%d pairs, want 3", len(pairs))
	}
	for i, pr := range pairs {
		a, b := d.Rows[i], d.Rows[i+1]
		if pr.A != a.ID || pr.B != b.ID || pr.RewardA != a.Reward || pr.RewardB != b.Reward || float64(pr.RewardDiff) != float64(a.Reward-b.Reward) {
			t.Errorf("pair %d = %+v, rows %s %v, %s %v", i, pr, a.ID, a.Reward, b.ID, b.Reward)
		}
	}
}

// TestDeterministicSamplerIsRejected: every mode trains on step log-probabilities, which a
// deterministic step does not have; the error says so and names the fix.
func TestDeterministicSamplerIsRejected(t *testing.T) {
	for _, mode := range []finetune.Mode{finetune.DDPO, finetune.D3PO, finetune.PRDP, finetune.GRPO, finetune.AdvGRPO, finetune.Steered} {
		for _, sc := range []finetune.Sampling{{Steps: 8, Rule: schedule.EulerRule}, {Steps: 8, Rule: schedule.DDIMRule, Eta: 0}} {
			o := finetune.Options{Mode: mode, Out: t.TempDir(), Prompts: []string{"x"}, Sampling: sc, Reward: redness(t)}
			_, err := finetune.Export(context.Background(), nil, o)
			if err == nil || !strings.Contains(err.Error(), "deterministic") || !strings.Contains(err.Error(), "--sampler ddim --eta 1") || !strings.Contains(err.Error(), string(mode)) {
				t.Errorf("mode %s, %s eta %g: error %v", mode, sc.Rule, sc.Eta, err)
			}
		}
	}
}

// TestSteeredKeepsGenealogyAndStoresPrefixesOnce exports FK-steered particles: rows carry the
// normalised log-weights and the parent slot at each resampling, children reference their
// parents' stored prefix, and every trajectory rebuilt from the shard equals the one recorded
// along the particle's own ancestry.
func TestSteeredKeepsGenealogyAndStoresPrefixesOnce(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.Steered, out, `"A"`)
	o.Samples = 6
	o.Sampling.Steps = 12
	o.Sampling.FK = &finetune.Steering{Potential: potentials.Diff, Lambda: potentials.Lambda{Value: 20},
		Resampling: potentials.Schedule{Every: 2, Start: 2, End: 8}}
	export(t, p, o)
	d := openDataset(t, out)

	cfg := sampler.Config{Prompt: `"A"`, Steps: 12, Rule: schedule.DDIMRule, Eta: 1, Seed: 100, Images: 1, Particles: 6, Record: true,
		Method: sampler.FK, Reward: redness(t), Select: sampler.SelectAll, Potential: potentials.Diff,
		Lambda: potentials.Lambda{Value: 20}, Resampling: potentials.Schedule{Every: 2, Start: 2, End: 8}}
	res, err := sampler.Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sumW float64
	copied := 0
	for k, r := range d.Rows {
		if r.LogWeight == nil || float64(*r.LogWeight) != res.LogWeights[k] {
			t.Errorf("%s: log-weight %v, run %v", r.ID, r.LogWeight, res.LogWeights[k])
		} else {
			sumW += math.Exp(float64(*r.LogWeight))
		}
		path := res.Trajectories.Path(k)
		if len(r.Genealogy) != res.Stats.Resamplings {
			t.Errorf("%s: %d genealogy entries for %d resamplings", r.ID, len(r.Genealogy), res.Stats.Resamplings)
		}
		for _, e := range r.Genealogy {
			if e[1] != path[e[0]] {
				t.Errorf("%s: parent at step %d is %d, lineage says %d", r.ID, e[0], e[1], path[e[0]])
			}
		}
		copied += len(r.ParentIDs)
		tr, err := d.Trajectory(r)
		if err != nil {
			t.Fatal(err)
		}
		states, means, _, _ := res.Trajectories.Trajectory(k)
		for s := range states {
			if !slices.Equal(tr.Latents[s], states[s]) || s < len(means) && !slices.Equal(tr.Means[s], means[s]) {
				t.Fatalf("%s: step %d differs from the recording", r.ID, s)
			}
		}
	}
	if math.Abs(sumW-1) > 1e-9 {
		t.Errorf("weights sum to %g, want 1", sumW)
	}
	if res.Stats.Resamplings == 0 || copied == 0 {
		t.Fatalf("%d resamplings, %d parent references: the test would not exercise shared prefixes", res.Stats.Resamplings, copied)
	}
	lat, _ := d.Tensor(d.Rows[0], finetune.KeyLatents)
	if n := lat.Shape[0]; n >= 6*13 {
		t.Errorf("%d stored states for 6 samples of 13 states: shared prefixes were not stored once", n)
	}
	checkLogProbs(t, d)
}

// TestSharedPrefixIsStoredOnce: GRPO with a prefix of 4 steps stores x_T..x_4 once and each
// sample's own 4 later states, and the children name the owner of the prefix.
func TestSharedPrefixIsStoredOnce(t *testing.T) {
	p := openGlyphs(t)
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.GRPO, out, `"M"`)
	o.SharePrefix = 4
	export(t, p, o)
	d := openDataset(t, out)
	lat, _ := d.Tensor(d.Rows[0], finetune.KeyLatents)
	means, _ := d.Tensor(d.Rows[0], finetune.KeyMeans)
	if lat.Shape[0] != 5+4*4 || means.Shape[0] != 4+4*4 {
		t.Errorf("%d states and %d means stored, want 21 and 20", lat.Shape[0], means.Shape[0])
	}
	for _, r := range d.Rows[1:] {
		if !slices.Equal(r.ParentIDs, []string{"g000000-00"}) || len(r.Genealogy) != 1 || r.Genealogy[0] != [2]int{3, 0} {
			t.Errorf("%s: parents %v, genealogy %v", r.ID, r.ParentIDs, r.Genealogy)
		}
	}
	checkLogProbs(t, d)
}

// TestFloat16Latents: the half option stores latents as F16 (within half precision of the
// float32 export) and leaves means and log-probabilities float32.
func TestFloat16Latents(t *testing.T) {
	p := openGlyphs(t)
	dirs := [2]string{filepath.Join(t.TempDir(), "f32"), filepath.Join(t.TempDir(), "f16")}
	for i, dir := range dirs {
		o := glyphOptions(t, finetune.GRPO, dir, `"C"`)
		o.Half = i == 1
		export(t, p, o)
	}
	full, half := openDataset(t, dirs[0]), openDataset(t, dirs[1])
	a, _ := full.Tensor(full.Rows[0], finetune.KeyLatents)
	b, _ := half.Tensor(half.Rows[0], finetune.KeyLatents)
	m, _ := half.Tensor(half.Rows[0], finetune.KeyMeans)
	if a.Dtype != finetune.F32 || b.Dtype != finetune.F16 || m.Dtype != finetune.F32 || !slices.Equal(a.Shape, b.Shape) {
		t.Fatalf("dtypes %s %s %s, shapes %v %v", a.Dtype, b.Dtype, m.Dtype, a.Shape, b.Shape)
	}
	av, _ := a.Float32()
	bv, _ := b.Float32()
	for i := range av {
		if d := math.Abs(float64(av[i] - bv[i])); d > 1e-3*math.Max(1, math.Abs(float64(av[i]))) {
			t.Fatalf("element %d: %v in float32, %v in float16", i, av[i], bv[i])
		}
	}
	if half.Info.Bytes >= full.Info.Bytes {
		t.Errorf("float16 dataset is %d bytes, float32 %d", half.Info.Bytes, full.Info.Bytes)
	}
}

// TestCompositeRewardParts: with a composite reward every part's score and weight is recorded,
// and the training reward is their weighted sum.
func TestCompositeRewardParts(t *testing.T) {
	p := openGlyphs(t)
	spec := "color:target=#cc2222+0.5*color:target=#2222cc"
	r, err := rewards.Parse(spec, rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := filepath.Join(t.TempDir(), "ds")
	o := glyphOptions(t, finetune.GRPO, out, `a blue "A"`)
	o.Reward, o.RewardSpec = r, spec
	export(t, p, o)
	d := openDataset(t, out)
	for _, row := range d.Rows {
		c1, c2 := float64(row.Rewards["color"]), float64(row.Rewards["color#2"])
		if len(row.Rewards) != 2 || row.RewardWeights["color"] != 1 || row.RewardWeights["color#2"] != 0.5 {
			t.Fatalf("%s: parts %v, weights %v", row.ID, row.Rewards, row.RewardWeights)
		}
		if c1 == c2 || math.Abs(float64(row.Reward)-(c1+0.5*c2)) > 1e-12 {
			t.Errorf("%s: reward %v from parts %v and %v", row.ID, row.Reward, c1, c2)
		}
	}
}

// TestSteeredSearchMethodsExportTheirKeptPaths: mode steered exports the paths svdd and beam
// keep, each step's stored log-probability exact for the stored states (beam's rows follow the
// kept children across their parents' rows, through the genealogy), and the rows name the
// method and its settings.
func TestSteeredSearchMethodsExportTheirKeptPaths(t *testing.T) {
	p := openGlyphs(t)
	for _, m := range []sampler.Method{sampler.SVDD, sampler.Beam} {
		out := filepath.Join(t.TempDir(), "ds")
		o := glyphOptions(t, finetune.Steered, out, `"A"`, `"B"`)
		o.Samples = 3
		o.Sampling.FK = &finetune.Steering{Method: m, Search: sampler.Search{Candidates: 3}}
		export(t, p, o)
		d := openDataset(t, out)
		checkLogProbs(t, d)
		branched := 0
		for _, r := range d.Rows {
			if r.Scheduler.Method != m || r.Scheduler.Search == nil || r.Scheduler.Search.Candidates != 3 {
				t.Fatalf("%s: scheduler %+v", r.ID, r.Scheduler)
			}
			branched += len(r.Genealogy)
		}
		if (m == sampler.Beam) != (branched > 0) {
			t.Errorf("%s: %d genealogy entries in all; beam branches, svdd never moves a path", m, branched)
		}
	}
}
