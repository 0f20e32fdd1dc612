package generation_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models"
)

// Generating: a spec, an environment to resolve it, a run, its images written as PNG files
// that record their settings.
func Example() {
	if err := models.Init(""); err != nil { // finds the library `make ort` installed
		log.Fatal(err)
	}
	env := &generation.Env{}
	defer env.Close()
	run, err := env.Prepare(context.Background(), generation.Spec{Prompt: `"A" on black`, Steps: 8, Images: 2})
	if err != nil {
		log.Fatal(err)
	}
	res, err := run.Sample(context.Background(), 0, run.Spec.Images, nil)
	if err != nil {
		log.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)
	written, err := res.WriteImages(dir)
	if err != nil {
		log.Fatal(err)
	}
	back, _ := generation.ReadSpec(written[1].Path) // a PNG is a spec of its own image
	fmt.Println(len(written), "images;", run.Config.Rule, "sampler;", "the second reads back as seed", back.Seed)
	// Output: 2 images; ddim sampler; the second reads back as seed 1
}

// Steering: Feynman-Kac with four particles per image toward a colour. The result carries
// every particle's reward and the genealogy of the resamplings.
func Example_steer() {
	if err := models.Init(""); err != nil {
		log.Fatal(err)
	}
	env := &generation.Env{}
	defer env.Close()
	spec := generation.Spec{Prompt: `a red "R"`, Steps: 10, Method: "fk", Particles: 4, Reward: "color:target=#cc2222", Seed: 3}
	run, err := env.Prepare(context.Background(), spec)
	if err != nil {
		log.Fatal(err)
	}
	res, err := run.Sample(context.Background(), 0, 1, nil)
	if err != nil {
		log.Fatal(err)
	}
	best := res.Outputs[0]
	fmt.Printf("%d output from %d particles, %d resamplings, reward %.2f\n", len(res.Outputs), res.All.N, res.Stats.Resamplings, best.Reward)
	// Output: 1 output from 4 particles, 6 resamplings, reward 0.70
}

// Searching at a budget: beam search sized to 40 NFE per image (here 2 beams of 8 steps, each
// branching into 2 children at every step after the first), with the compute it spent.
func Example_budget() {
	if err := models.Init(""); err != nil {
		log.Fatal(err)
	}
	env := &generation.Env{}
	defer env.Close()
	spec := generation.Spec{Prompt: `a red "R"`, Steps: 8, Method: "beam", Budget: 40, Reward: "color:target=#cc2222", Seed: 3}
	run, err := env.Prepare(context.Background(), spec)
	if err != nil {
		log.Fatal(err)
	}
	res, err := run.Sample(context.Background(), 0, 1, nil)
	if err != nil {
		log.Fatal(err)
	}
	st := res.Stats
	fmt.Printf("%d beams, %d NFE in %d model calls, %d reward evaluations\n", run.Config.Particles, st.NFE, st.ModelCalls, st.RewardEvals)
	// Output: 2 beams, 28 NFE in 8 model calls, 26 reward evaluations
}

// Exporting: the run's configuration drives a dataset export for a reward fine-tuning trainer
// (here GRPO groups of four samples per prompt).
func Example_export() {
	if err := models.Init(""); err != nil {
		log.Fatal(err)
	}
	env := &generation.Env{}
	defer env.Close()
	spec := generation.Spec{Steps: 6, Reward: "color:target=#cc2222"}
	run, err := env.Prepare(context.Background(), spec)
	if err != nil {
		log.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)
	sum, err := finetune.Export(context.Background(), run.Model, finetune.Options{
		Mode: finetune.GRPO, Out: dir, Prompts: []string{`"A"`, `"B"`}, Samples: 4,
		Sampling: finetune.SamplingOf(run.Config, finetune.GRPO), Reward: run.Config.Reward, RewardSpec: spec.Reward,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sum.Groups, "groups,", sum.Samples, "samples")
	// Output: 2 groups, 8 samples
}
