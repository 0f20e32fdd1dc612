package finetune_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// The data side of one iteration of a GRPO fine-tuning loop: sample a group with recording, take
// its tensors and advantages in memory (nothing touches the disk), then keep them in a dataset.
func Example() {
	if err := fineTuningStep(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// sample 2: 9 states of 3072 values; step 0 log-prob finite: true
	// advantages sum to zero: true
	// latents F32 [36 3 32 32]
	// latent_index I64 [4 9]
	// means F32 [32 3 32 32]
	// mean_index I64 [4 8]
	// stds F32 [8]
	// log_probs F32 [4 8]
	// 4 rows; g000000-02 in shards/shard-00000.safetensors as g000000/latents
}

func fineTuningStep() error {
	ctx := context.Background()
	if err := models.Init(""); err != nil { // ONNX Runtime: `make ort` installs it
		return err
	}
	tmp, err := os.MkdirTemp("", "fksteer-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// 1. Open a pipeline (the built-in glyphs model) and a reward.
	p, err := pipelines.OpenGlyphs(tmp)
	if err != nil {
		return err
	}
	defer p.Close()
	red, err := rewards.Parse("color:target=#cc2222", rewards.Env{})
	if err != nil {
		return err
	}
	defer red.Close()

	// 2. Sample a group of 4 with recording; a stochastic step, so every step has a log-probability.
	// The run scores its final samples (with every part of the reward): the group takes them.
	cfg := sampler.Config{
		Prompt: `a red "A"`, Steps: 8, Rule: schedule.DDIMRule, Eta: 1,
		Images: 1, Particles: 4, Seed: 1, Record: true, Reward: red,
	}
	res, err := sampler.Run(ctx, p, cfg)
	if err != nil {
		return err
	}
	groups, err := finetune.NewGroups(res, 0)
	if err != nil {
		return err
	}
	g := groups[0]

	// 3. Tensors and advantages in memory, as a trainer's policy-gradient step consumes them.
	adv := finetune.GroupAdvantages(g.Rewards(), finetune.GRPOEpsilon)
	g.SetAdvantages(adv)
	var sum float64
	for _, a := range adv {
		sum += a
	}
	latents := g.Latents(2) // x_T .. x_0 of sample 2
	lp := g.LogProbs[2*g.Steps : 3*g.Steps]
	fmt.Printf("sample 2: %d states of %d values; step 0 log-prob finite: %v\n", len(latents), len(latents[0]), !math.IsNaN(float64(lp[0])))
	fmt.Printf("advantages sum to zero: %v\n", math.Abs(sum) < 1e-9)
	for _, t := range g.Tensors(false)[:6] {
		fmt.Println(t.Name, t.Dtype, t.Shape)
	}

	// 4. Write them: a shard, the manifest, the groups file and the images.
	w, err := finetune.OpenWriter(filepath.Join(tmp, "dataset"), finetune.WriterOptions{Mode: finetune.GRPO})
	if err != nil {
		return err
	}
	if err := w.Add(g); err != nil {
		return err
	}
	if err := w.Finish(); err != nil {
		return err
	}
	d, err := finetune.OpenDataset(filepath.Join(tmp, "dataset"))
	if err != nil {
		return err
	}
	fmt.Println(len(d.Rows), "rows;", d.Rows[2].ID, "in", d.Rows[2].Shard, "as", d.Rows[2].Tensors["latents"])
	return nil
}
