package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/sampler"
)

// exportFlags are the export command's own flags. They are plain flags, not configuration keys:
// the keys of generate (steps, sampler, ...) belong to that command, and sharing them through
// viper would bind one key to two commands' flags.
type exportFlags struct {
	mode, prompts              string
	samples                    int
	pairs                      string
	tie                        float64
	shareStart                 bool
	sharePrefix                int
	globalStd, half            bool
	shardMiB                   float64
	references, dino           string
	dinoRegisters, dinoPatches int
}

// exportSettings are the sampling keys export shares with generate and batch (flags, FKSTEER_*
// variables and the config file alike); the steering ones apply to --mode steered only.
var exportSettings = append([]string{"model", "class", "steps", "seed", "guidance", "sampler", "eta", "out", "json", "reward"},
	steeringSettings...)

// steeringSettings are the export settings of --mode steered only.
var steeringSettings = []string{"potential", "lambda", "lambda-start", "lambda-ramp", "resample-every",
	"resample-start", "resample-end", "ess-threshold", "resampler",
	"method", "budget", "candidates", "alpha", "beam-every", "iterations", "widening", "exploration"}

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
reference images and DINO features), steered (steered particles: FK by default, with log-weights
and genealogy; --method svdd, beam, dts or dts-star for the paths those searches keep).

Export runs as a batch job: each prompt's group is an item, sampled by --workers workers (0: one
per core, as many as fit in memory) into a work folder with a record holding every file's sha256,
and the dataset is assembled from the finished groups in prompt order, so it is byte for byte the
same whatever the workers, shards or interruptions. Running the same command again resumes: groups
already finished are kept, missing or damaged ones sampled again; a process killed at any moment
loses only the groups it was sampling.

--shard INDEX/COUNT samples every COUNT-th prompt (by default the shard comes from a Kubernetes
Indexed Job or a Slurm array) and writes no dataset: 'fksteer export merge' joins the shards'
folders and assembles it.`,
		Example: `  fksteer export --mode grpo --prompts prompts.txt --out data/grpo --samples 8 \
      --reward color:target=#cc2222
  fksteer export --mode d3po --model examples/mnist-dit-rf.yaml --sampler ddim --eta 1 \
      --prompts digits.txt --out data/d3po --samples 2 \
      --reward classifier:model=../shared/models/mnist-cnn-classifier/mnist-8.onnx,crop=28
  fksteer export --mode grpo --prompts prompts.txt --out data/s1 --shard 1/2 --reward color:target=#cc2222 && \
      fksteer export merge --out data/grpo data/s0 data/s1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.export(cmd, &f) },
	}
	fs := cmd.Flags()
	addFlags(fs, pick(samplingSettings, exportSettings...))
	addFlags(fs, pick(batchSettings, "workers", "shard"))
	fs.StringVar(&f.mode, "mode", "", "dataset mode: ddpo, d3po, prdp, grpo, adv-grpo, steered (required)")
	fs.StringVar(&f.prompts, "prompts", "", "file of prompts, one per line (required)")
	fs.IntVar(&f.samples, "samples", 0, "samples per prompt: N (ddpo), n (d3po, prdp), G (grpo), K (steered); default 2 for pair modes, else 8")
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

	var partial bool
	merge := &cobra.Command{
		Use:   "merge --out DEST SOURCE...",
		Short: "Join the shards of a sharded export and write the dataset, as one unsharded export would",
		Long: `Joins the groups the shards of an export sampled (each SOURCE is the --out of a shard's run;
DEST may be one of them, when the shards shared a folder) into DEST's work folder, checking every
file against its recorded sha256 as 'fksteer batch merge' does, and writes the dataset there: byte
for byte what one unsharded export with the same settings writes. A missing or unfinished shard is
an error unless --partial (the dataset is then marked incomplete). Sources exported with other
settings or prompts are refused, naming what differs, and so are merges that would replace or drop
finished groups (exit code 2); DEST is left unchanged.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return a.exportMerge(args, partial) },
	}
	addFlags(merge.Flags(), pick(samplingSettings, "out", "json"))
	merge.Flags().BoolVar(&partial, "partial", false, "merge what there is even when shards are missing or unfinished")
	cmd.AddCommand(merge)
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
		if name := changedAny(fs, steeringSettings...); name != "" {
			return usageError{fmt.Errorf("--%s is a steering setting, for --mode steered only", name)}
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
	spec, err := specOf(a.v)
	if err != nil {
		return err
	}
	// The mode decides the method, except in mode steered, whose default is fk.
	switch {
	case mode != finetune.Steered:
		spec.Method = string(sampler.Base)
	case spec.Method == "":
		spec.Method = string(sampler.FK)
	}
	env := a.newEnv(opts)
	defer func() { env.Close() }() // the env workerPlan's threads may replace
	// The same translation of settings as generate and batch; Export then sets the method,
	// particles and selection that the mode implies.
	run, err := env.Prepare(cmd.Context(), spec)
	if err != nil {
		return err
	}
	p := run.Model
	out := a.v.GetString("out")
	o := finetune.Options{
		Mode: mode, Out: out, Prompts: prompts, Samples: f.samples,
		ShareStart: f.shareStart, SharePrefix: f.sharePrefix, GlobalStd: f.globalStd,
		Half: f.half, ShardSize: int64(f.shardMiB * (1 << 20)), TieTolerance: f.tie,
		Pairs: finetune.PairPolicy(f.pairs),
	}
	if f.shardMiB <= 0 {
		return usageError{fmt.Errorf("--shard-size must be positive (got %g MiB)", f.shardMiB)}
	}
	o.Sampling = finetune.SamplingOf(run.Config, mode)
	o.Reward, o.RewardSpec = run.Config.Reward, a.v.GetString("reward")
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
	if o.Shard, err = a.shard(); err != nil {
		return err
	}
	// A group is one run of --samples particles that records every step (finetune.Export).
	group := o.Config(0)
	if err := checkCounts(group.Steps, group.Particles, "--samples"); err != nil {
		return err
	}
	workers, threads, why, err := a.workerPlan(cmd, generation.EstimateMemory(p.Info(), group, 1, false), "--samples or --steps")
	if err != nil {
		return err
	}
	if threads > 0 {
		// The model and reward again, with the cores split between the workers (workerPlan).
		env.Close()
		env = a.newEnv(append(opts, models.WithThreads(threads, 0)))
		if run, err = env.Prepare(cmd.Context(), spec); err != nil {
			return err
		}
		p, o.Sampling, o.Reward = run.Model, finetune.SamplingOf(run.Config, mode), run.Config.Reward
	}
	o.Workers = workers
	if err := checkWritable(out); err != nil {
		return err
	}
	a.log.Info("exporting", "mode", mode, "model", p.Info().Name, "prompts", len(prompts), "samples", o.Samples,
		"steps", o.Sampling.Steps, "sampler", o.Sampling.Rule, "eta", o.Sampling.Eta, "out", out,
		"shard", o.Shard.String(), "workers", workers, "bound", why, "threads_per_worker", threads)
	o.Progress = func(pr finetune.Progress) {
		fmt.Fprintf(a.stderr, "%s (%d/%d): mean reward %s, %.1fs\n", pr.Group, pr.Done, pr.Total, meanReward(pr.Rewards), pr.Elapsed.Seconds())
	}
	o.Log = a.log
	sum, err := finetune.Export(cmd.Context(), p, o)
	if err != nil {
		return batchUsage(allocFailure(err, "--samples, --steps or --workers"))
	}
	return a.printExport(sum, o.RewardSpec)
}

func (a *app) exportMerge(sources []string, partial bool) error {
	sum, err := finetune.Merge(a.v.GetString("out"), sources, partial)
	if err != nil {
		return batchUsage(err)
	}
	return a.printExport(sum, "")
}

// printExport reports what an export or a merge wrote: the summary as JSON with --json, else the
// dataset folder on stdout and a line about it on stderr.
func (a *app) printExport(sum *finetune.Summary, rewardSpec string) error {
	if sum.Redone > 0 {
		a.log.Warn("sampled again groups whose files were missing or damaged (the lines above say which)", "groups", sum.Redone)
	}
	if sum.NoReward > 0 {
		// One line, whatever the count: the manifest's nulls say which samples.
		a.log.Warn("samples without a finite reward: stored as null and left out of means, stds and advantages; check the reward spec and its model",
			"samples", fmt.Sprintf("%d/%d", sum.NoReward, sum.Samples), "reward", rewardSpec)
	}
	if a.v.GetBool("json") {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	fmt.Fprintf(a.stdout, "%s\n", sum.Dir)
	if sum.Shard != "" {
		fmt.Fprintf(a.stderr, "export shard %s: %d groups in %s (%d already there); join the shards with fksteer export merge --out DIR FOLDER...\n",
			sum.Shard, sum.Groups, finetune.WorkDir(sum.Dir), sum.Skipped)
		return nil
	}
	fmt.Fprintf(a.stderr, "dataset %s: %d samples in %d groups (%d already there), %d shards, %.1f MiB; bytes per sample %.0f\n",
		sum.Dir, sum.Samples, sum.Groups, sum.Skipped, len(sum.Shards), float64(sum.Bytes)/(1<<20), float64(sum.Bytes)/float64(max(1, sum.Samples)))
	return nil
}

// meanReward formats the mean of the finite rewards, or "none" when no reward is finite (a NaN
// mean would read as a number).
func meanReward(rs []float64) string {
	var sum float64
	n := 0
	for _, r := range rs {
		if !math.IsNaN(r) && !math.IsInf(r, 0) {
			sum += r
			n++
		}
	}
	if n == 0 {
		return "none (no finite reward)"
	}
	return fmt.Sprintf("%.4g", sum/float64(n))
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

// readPrompts reads one prompt per line, skipping blank lines.
func readPrompts(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("prompts file: %w", err)
	}
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimRight(line, "\r"); strings.TrimSpace(line) != "" {
			if err := checkPromptText(line, fmt.Sprintf("prompts file %s: line %d", path, i+1)); err != nil {
				return nil, err
			}
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
