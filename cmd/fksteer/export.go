package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
)

// exportFlags are the export command's own flags. They are plain flags, not configuration keys:
// the keys of generate (steps, sampler, ...) belong to that command, and sharing them through
// viper would bind one key to two commands' flags.
type exportFlags struct {
	mode, model, prompts, out  string
	samples, steps, class      int
	rule                       string
	eta, guidance              float64
	seed                       uint64
	reward                     string
	pairs                      string
	tie                        float64
	shareStart                 bool
	sharePrefix                int
	globalStd, half, asJSON    bool
	shardMiB                   float64
	references, dino           string
	dinoRegisters, dinoPatches int
	potential, lambdaRamp      string
	lambda, lambdaStart, ess   float64
	every, start, end          int
	resampler                  string
}

func (a *app) exportCommand() *cobra.Command {
	var f exportFlags
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Sample prompts with recorded trajectories and write a fine-tuning dataset",
		Long: `Export samples every prompt of a file (one prompt per line; blank lines are skipped), records
every denoising step with its mean, standard deviation and log-probability, scores the samples and
writes a dataset for a reward fine-tuning trainer: safetensors shards, manifest.jsonl (one row per
sample), groups.jsonl, pairs.jsonl (d3po, prdp) and PNG images. docs/datasets.md documents the
layout and how to load it in PyTorch.

Modes: ddpo (N samples per prompt, per-prompt advantages), d3po (n samples sharing x_T, preference
pairs), prdp (pairs with both rewards), grpo (groups of G, group advantages), adv-grpo (grpo plus
reference images and DINO features), steered (FK-steered particles with log-weights and genealogy).

Running the same command again after an interruption resumes: prompts already in the dataset are
skipped, and the result is what an uninterrupted run writes.`,
		Example: `  fksteer export --mode grpo --prompts prompts.txt --out data/grpo --samples 8 \
      --reward color:target=#cc2222
  fksteer export --mode d3po --model examples/mnist-dit-rf.yaml --sampler ddim --eta 1 \
      --prompts digits.txt --out data/d3po --samples 2 \
      --reward classifier:model=../shared/models/mnist-cnn-classifier/mnist-8.onnx,crop=28`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.export(cmd, &f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.mode, "mode", "", "dataset mode: ddpo, d3po, prdp, grpo, adv-grpo, steered (required)")
	fs.StringVar(&f.model, "model", "glyphs", "model: glyphs (built in), or a manifest .yaml")
	fs.StringVar(&f.prompts, "prompts", "", "file of prompts, one per line (required)")
	fs.StringVar(&f.out, "out", "", "dataset folder: new, empty, or a dataset to resume (required)")
	fs.IntVar(&f.samples, "samples", 0, "samples per prompt: N (ddpo), n (d3po, prdp), G (grpo), K (steered); default 2 for pair modes, else 8")
	fs.IntVar(&f.steps, "steps", 0, "sampling steps (default: the model's)")
	fs.StringVar(&f.rule, "sampler", "", "step rule, stochastic: ddim (with --eta > 0), ddpm, euler-a, flow-sde (default: the model's)")
	fs.Float64Var(&f.eta, "eta", 0, "noise of ddim/euler-a, flow-sde's noise level (default: the model's)")
	fs.Float64Var(&f.guidance, "guidance", 0, "classifier-free guidance scale, off at <= 1 (default: the model's)")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of the first prompt; prompt i uses seed+i")
	fs.IntVar(&f.class, "class", -1, "class id for class-conditional models (overrides the prompts; -1 = from each prompt)")
	fs.StringVar(&f.reward, "reward", "", "reward spec, e.g. color:target=#cc2222 or a composite 0.7*ocr+0.3*aesthetic:... (docs/rewards.md); every part is recorded")
	fs.StringVar(&f.pairs, "pairs", "", "d3po, prdp: all (every two samples of a prompt) or adjacent (i, i+1); default all")
	fs.Float64Var(&f.tie, "tie-tolerance", 0, "d3po, prdp: rewards this close are a tie")
	fs.BoolVar(&f.shareStart, "share-start", false, "grpo, adv-grpo, prdp: the samples of a prompt share x_T (d3po always does)")
	fs.IntVar(&f.sharePrefix, "share-prefix", 0, "grpo, adv-grpo: the samples of a prompt share their trajectory up to this step")
	fs.BoolVar(&f.globalStd, "global-std", false, "grpo, adv-grpo: normalise advantages by the std of all rewards")
	fs.BoolVar(&f.half, "float16", false, "store the latents (the state stack) as float16")
	fs.Float64Var(&f.shardMiB, "shard-size", 256, "shard roll-over size in MiB (a shard being filled is held in memory)")
	fs.StringVar(&f.references, "references", "", "adv-grpo: JSON file mapping each prompt to its reference images (paths relative to the file)")
	fs.StringVar(&f.dino, "dino", "", "adv-grpo: ONNX ViT feature model in DINOv2's export layout (pixel_values -> last_hidden_state)")
	fs.IntVar(&f.dinoRegisters, "dino-registers", 0, "adv-grpo: register tokens between CLS and the patches (4 for DINOv2 -reg models)")
	fs.IntVar(&f.dinoPatches, "dino-patches", 0, "adv-grpo: patch tokens kept per image besides CLS: 0 none, -1 all, n evenly spaced")
	fs.StringVar(&f.potential, "potential", "diff", "steered: FK potential: diff, max, sum, immediate")
	fs.Float64Var(&f.lambda, "lambda", 10, "steered: FK potential scale lambda")
	fs.Float64Var(&f.lambdaStart, "lambda-start", 0, "steered: ramp lambda up from this value (0 = constant)")
	fs.StringVar(&f.lambdaRamp, "lambda-ramp", "constant", "steered: lambda schedule: constant, linear, exponential")
	fs.IntVar(&f.every, "resample-every", 0, "steered: evaluate potentials every n steps (0 = steps/20, at least 1)")
	fs.IntVar(&f.start, "resample-start", -1, "steered: first evaluation step, 0-based (-1 = the interval)")
	fs.IntVar(&f.end, "resample-end", -1, "steered: last intermediate evaluation step (-1 = 60% of the steps)")
	fs.Float64Var(&f.ess, "ess-threshold", 0, "steered: resample only when ESS < threshold*K (0 = at every evaluation)")
	fs.StringVar(&f.resampler, "resampler", "systematic", "steered: resampling scheme: systematic, stratified, multinomial, residual")
	fs.BoolVar(&f.asJSON, "json", false, "print the summary as JSON")
	return cmd
}

func (a *app) export(cmd *cobra.Command, f *exportFlags) error {
	fs := cmd.Flags()
	for _, req := range []string{"mode", "prompts", "out"} {
		if !fs.Changed(req) {
			return usageError{fmt.Errorf("--%s is required (see fksteer export --help)", req)}
		}
	}
	mode, err := finetune.ParseMode(f.mode)
	if err != nil {
		return usageError{err}
	}
	if mode != finetune.Steered {
		if name := changedAny(fs, "potential", "lambda", "lambda-start", "lambda-ramp", "resample-every", "resample-start", "resample-end", "ess-threshold", "resampler"); name != "" {
			return usageError{fmt.Errorf("--%s is an FK steering setting, for --mode steered only", name)}
		}
	}
	if mode != finetune.AdvGRPO {
		if name := changedAny(fs, "references", "dino", "dino-registers", "dino-patches"); name != "" {
			return usageError{fmt.Errorf("--%s is for --mode adv-grpo only", name)}
		}
	}
	prompts, err := readPrompts(f.prompts)
	if err != nil {
		return err
	}
	opts, err := a.initRuntime()
	if err != nil {
		return err
	}
	p, err := a.openPipeline(f.model, opts)
	if err != nil {
		return err
	}
	defer p.Close()
	o := finetune.Options{
		Mode: mode, Out: f.out, Prompts: prompts, Samples: f.samples,
		ShareStart: f.shareStart, SharePrefix: f.sharePrefix, GlobalStd: f.globalStd,
		Half: f.half, ShardSize: int64(f.shardMiB * (1 << 20)), TieTolerance: f.tie,
		Pairs: finetune.PairPolicy(f.pairs),
	}
	if f.shardMiB <= 0 {
		return usageError{fmt.Errorf("--shard-size must be positive (got %g MiB)", f.shardMiB)}
	}
	if o.Sampler, err = exportSampler(fs, f, p.Info()); err != nil {
		return err
	}
	if f.reward != "" {
		if o.Reward, err = rewards.Parse(f.reward, rewards.Env{ModelOptions: opts}); err != nil {
			return err
		}
		defer o.Reward.Close()
		o.RewardSpec = f.reward
	}
	if mode == finetune.AdvGRPO {
		if f.dino == "" || f.references == "" {
			return usageError{errors.New("--mode adv-grpo needs --dino (a DINOv2-style ONNX ViT) and --references (a JSON map of prompt to reference images)")}
		}
		if o.References, err = readReferences(f.references); err != nil {
			return err
		}
		vit, err := finetune.OpenViT(f.dino, finetune.ViTOptions{Registers: f.dinoRegisters, Patches: f.dinoPatches}, opts...)
		if err != nil {
			return err
		}
		defer vit.Close()
		o.Features = vit
	}
	if err := o.Validate(); err != nil {
		return usageError{err}
	}
	if err := checkWritable(f.out); err != nil {
		return err
	}
	a.log.Info("exporting", "mode", mode, "model", p.Info().Name, "prompts", len(prompts), "samples", o.Samples,
		"steps", o.Sampler.Steps, "sampler", o.Sampler.Rule, "eta", o.Sampler.Eta, "out", f.out)
	o.Progress = func(pr finetune.Progress) {
		if pr.Rewards == nil {
			a.log.Debug("already in the dataset", "group", pr.Group)
			return
		}
		var mean float64
		for _, r := range pr.Rewards {
			mean += r / float64(len(pr.Rewards))
		}
		fmt.Fprintf(a.stderr, "%s (%d/%d): mean reward %.4g, %.1fs\n", pr.Group, pr.Done, pr.Total, mean, pr.Elapsed.Seconds())
	}
	sum, err := finetune.Export(cmd.Context(), p, o)
	if err != nil {
		return err
	}
	if f.asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	fmt.Fprintf(a.stdout, "%s\n", sum.Dir)
	fmt.Fprintf(a.stderr, "dataset %s: %d samples in %d groups (%d already there), %d shards, %.1f MiB; bytes per sample %.0f\n",
		sum.Dir, sum.Samples, sum.Groups, sum.Skipped, len(sum.Shards), float64(sum.Bytes)/(1<<20), float64(sum.Bytes)/float64(max(1, sum.Samples)))
	return nil
}

// changedAny returns the first of names the user set, or "".
func changedAny(fs *pflag.FlagSet, names ...string) string {
	for _, n := range names {
		if fs.Changed(n) {
			return n
		}
	}
	return ""
}

// exportSampler builds the sampling settings from the flags, taking the model's recommended
// values for those not given.
func exportSampler(fs *pflag.FlagSet, f *exportFlags, info pipelines.Info) (sampler.Config, error) {
	d := info.Defaults
	cfg := sampler.Config{Steps: d.Steps, Guidance: d.Guidance, Eta: d.Eta, Seed: f.seed}
	if fs.Changed("steps") {
		if f.steps <= 0 {
			return cfg, usageError{fmt.Errorf("--steps must be positive (got %d)", f.steps)}
		}
		cfg.Steps = f.steps
	}
	if fs.Changed("guidance") {
		cfg.Guidance = f.guidance
	}
	if fs.Changed("eta") {
		cfg.Eta = f.eta
	}
	rule := d.Sampler
	if fs.Changed("sampler") || rule == "" {
		rule = f.rule
	}
	if rule == "" {
		rule = string(sampler.Euler)
	}
	var err error
	if cfg.Rule, err = sampler.ParseRule(rule); err != nil {
		return cfg, usageError{err}
	}
	if f.class >= 0 {
		c := int64(f.class)
		cfg.CondOpts.Class = &c
	}
	if cfg.Potential, err = potentials.ParseKind(f.potential); err != nil {
		return cfg, usageError{err}
	}
	ramp, err := potentials.ParseRamp(f.lambdaRamp)
	if err != nil {
		return cfg, usageError{err}
	}
	cfg.Lambda = potentials.Lambda{Value: f.lambda, Start: f.lambdaStart, Ramp: ramp}
	cfg.Resampling = resampling(cfg.Steps, f.every, f.start, f.end)
	cfg.Resampling.ESSThreshold = f.ess
	if cfg.Resampler, err = particles.ParseScheme(f.resampler); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// readPrompts reads one prompt per line, skipping blank lines.
func readPrompts(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("prompts file: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimRight(line, "\r"); strings.TrimSpace(line) != "" {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return nil, usageError{fmt.Errorf("prompts file %s holds no prompt (one per line)", path)}
	}
	return out, nil
}

// readReferences reads a JSON object mapping prompts to image paths, resolving relative paths
// against the file's folder.
func readReferences(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("references file: %w", err)
	}
	var refs map[string][]string
	if err := json.Unmarshal(data, &refs); err != nil {
		return nil, fmt.Errorf("references file %s must be a JSON object of prompt -> [image paths]: %w", path, err)
	}
	for prompt, paths := range refs {
		for i, p := range paths {
			if !filepath.IsAbs(p) {
				refs[prompt][i] = filepath.Join(filepath.Dir(path), p)
			}
		}
	}
	return refs, nil
}
