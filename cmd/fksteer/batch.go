package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
)

func (a *app) batchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batch --prompts FILE --out DIR",
		Short: "Generate images for every prompt of a file: resumable, crash-safe, shardable",
		Long: `Generates the images of every item of a prompts file into one folder. A text file holds one
prompt per line (blank lines and # comments are skipped); a .jsonl file holds one object per line
with "prompt" and optionally "id", "seed", "negative_prompt", "overrides" (per-item settings such
as steps, guidance or reward) and "references" (image files).

Each item's images are named by its id (<id>.png) and written atomically with their settings in a
PNG "parameters" chunk; manifest.jsonl lists every finished item with its files' sha256, and
summary.json gives counts, reward statistics and time. Item seeds derive from --seed and the
item's id, so results do not depend on workers or shards.

Run the same command again to resume: finished items are skipped, missing or corrupt ones redone.
A process killed at any moment loses only the items it was working on.

--shard INDEX/COUNT runs every COUNT-th item (by default the shard comes from a Kubernetes Indexed
Job or a Slurm array); 'fksteer batch merge' joins the shards' results. See docs/.`,
		Example: `  fksteer batch --prompts prompts.txt --out out/run1 --steps 30
  fksteer batch --prompts items.jsonl --out out/run2 --method fk --particles 8 --reward color:target=#cc2222
  fksteer batch --prompts prompts.txt --out out/s2 --shard 2/4 && fksteer batch merge --out out/all out/s0 out/s1 out/s2 out/s3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.batch(cmd) },
	}
	addFlags(cmd.Flags(), samplingSettings)
	addFlags(cmd.Flags(), batchSettings)

	var partial bool
	merge := &cobra.Command{
		Use:   "merge --out DEST SOURCE...",
		Short: "Join the results of a sharded batch into one folder, as one unsharded run would have written them",
		Long: `Reads the shard manifests (manifest.shard-I-of-N.jsonl) in each SOURCE folder, checks every file
against its recorded sha256, copies the files into --out (DEST may be one of the sources, when the
shards shared a folder) and writes manifest.jsonl and summary.json there. A missing or unfinished
shard is an error unless --partial.

A merge never replaces or drops finished outputs: merged into the folder of an earlier merge, the
items already there are kept. Everything is checked before anything is written, and a merge of
results made with other settings, into a folder holding an unsharded batch or files fksteer did
not write, or of a folder without shard manifests into itself is refused (exit code 2) with DEST
unchanged.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return a.batchMerge(args, partial) },
	}
	addFlags(merge.Flags(), pick(samplingSettings, "out", "json"))
	merge.Flags().BoolVar(&partial, "partial", false, "merge what there is even when shards are missing or unfinished")
	cmd.AddCommand(merge)
	return cmd
}

// pick returns the settings named keys.
func pick(from []setting, keys ...string) []setting {
	var out []setting
	for _, s := range from {
		for _, k := range keys {
			if s.key == k {
				out = append(out, s)
			}
		}
	}
	return out
}

func (a *app) batch(cmd *cobra.Command) error {
	ctx := cmd.Context()
	prompts := a.v.GetString("prompts")
	if prompts == "" {
		return usageError{errors.New("batch needs --prompts FILE (one prompt per line, or JSONL)")}
	}
	items, err := batch.ReadFile(prompts)
	if err != nil {
		return batchUsage(err)
	}
	shard, err := a.shard()
	if err != nil {
		return err
	}
	out := a.v.GetString("out")
	if err := checkWritable(out); err != nil {
		return err
	}
	mode := a.v.GetString("progress")
	switch mode {
	case "auto", "bar", "log", "off":
	default:
		return usageError{fmt.Errorf("progress %q is not auto, bar, log or off", mode)}
	}
	opts, err := a.initRuntime()
	if err != nil {
		return err
	}
	// The whole-batch settings are checked once here, so a bad flag is one message rather than
	// one per item.
	spec, err := specOf(a.v)
	if err != nil {
		return err
	}
	env := a.newEnv(opts)
	defer func() { env.Close() }()
	base, err := env.Prepare(ctx, spec)
	if err != nil {
		return err
	}
	// What one worker holds, from the whole-batch settings (an item that overrides them is
	// checked when it is prepared): no worker starts whose run cannot fit.
	est := generation.EstimateMemory(base.Info(), base.Config, spec.Images, spec.ContactSheet)
	workers, threads, why, err := a.workerPlan(cmd, est, "--particles or --num-images")
	if err != nil {
		return err
	}
	if threads > 0 {
		env.Close()
		env = a.newEnv(append(opts, models.WithThreads(threads, 0)))
		if base, err = env.Prepare(ctx, spec); err != nil {
			return err
		}
	}
	p := base.Model
	a.log.Info("batch", "items", len(items), "shard", shard.String(), "out", out, "model", p.Info().Name,
		"workers", workers, "bound", why, "threads_per_worker", threads, "steps", base.Config.Steps, "method", base.Config.Method, "particles", base.Config.Particles)

	fingerprint := jobFingerprint(base)
	// An item that runs out of memory stops the batch: the items after it, made with the same
	// settings, would too, and a rerun cannot help.
	jobCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	job := &batch.Job{
		Dir: out, Items: items, Shard: shard, Workers: workers,
		Prepare:     a.itemPreparer(env, spec, stop),
		Fingerprint: fingerprint,
		Overwrite:   a.v.GetBool("overwrite"),
		MaxFailures: a.v.GetInt("max-failures"),
		Progress:    newProgress(mode, a.stderr, a.log),
		Log:         a.log,
	}
	sum, err := job.Run(jobCtx)
	if cause := context.Cause(jobCtx); isAllocFailure(cause) {
		err = cause
	}
	if sum != nil {
		if perr := a.printBatchSummary(out, sum); perr != nil && err == nil {
			err = perr
		}
	}
	return batchUsage(err)
}

// workerPlan is the worker count of a job whose workers each hold est: --workers, or with 0 one
// per core as fit in memory (why says what bounded it), checked against the memory available;
// and the ONNX Runtime threads each worker's model must be opened with, 0 to keep the session
// options. Concurrent runs share the model's session, and ONNX Runtime gives each run as many
// threads as there are cores: with several workers that oversubscribes the cores (measured on 2
// cores: 2 workers gain nothing with ONNX Runtime's choice, ~20% with one thread each). Unless
// --threads is set, the cores are split between the workers, which needs the model reopened.
func (a *app) workerPlan(cmd *cobra.Command, est generation.Memory, lower string) (workers, threads int, why string, err error) {
	workers, why = a.v.GetInt("workers"), "--workers"
	if err := checkMemory(est, workers, lower); err != nil {
		return 0, 0, "", err
	}
	if workers <= 0 {
		workers, why = batch.AutoWorkers(est.Bytes)
	}
	if workers > 1 && a.sourceOf(cmd.Flags(), mustLookup("threads")) == fromDefault {
		threads = max(1, runtime.GOMAXPROCS(0)/workers)
	}
	return workers, threads, why, nil
}

// batchUsage marks the batch package's refusals that only a change to the command or its files
// can cure (bad items, an output folder holding what a run or merge must not replace) as usage
// errors, so that schedulers do not retry them (exit code 2).
func batchUsage(err error) error {
	var ie *batch.ItemError
	var ce *batch.ConflictError
	if errors.As(err, &ie) || errors.As(err, &ce) {
		return usageError{err}
	}
	return err
}

// jobFingerprint identifies the settings every item of a batch shares: what an image's
// parameters chunk would record with no prompt of its own and the base seed, plus what the chunk
// leaves out. Records carry it, so that merge can tell two batches' results apart even where no
// item is in both.
func jobFingerprint(base *generation.Run) string {
	return fingerprint(base, base.Config, base.Spec.Seed)
}

// fingerprint hashes everything that decides a run's files: the parameters chunk of the first
// image (prompt, negative prompt, every sampling and steering setting, model and seed) plus
// what it leaves out.
func fingerprint(r *generation.Run, cfg sampler.Config, seed uint64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nimages=%d contact-sheet=%t model-sha256=%s", r.Parameters(cfg, sampler.Output{Seed: seed}),
		r.Spec.Images, r.Spec.ContactSheet, r.Info().Hash)
	return hex.EncodeToString(h.Sum(nil))
}

// shard is --shard when set, else what a scheduler's environment assigns, else the whole job.
func (a *app) shard() (batch.Shard, error) {
	if s := a.v.GetString("shard"); s != "" {
		sh, err := batch.ParseShard(s)
		if err != nil {
			return sh, usageError{err}
		}
		return sh, nil
	}
	sh, src, err := batch.ShardFromEnv(os.Getenv)
	if err != nil {
		return sh, usageError{err}
	}
	if src != "" {
		a.log.Info("shard from the scheduler", "shard", sh.String(), "from", src)
	}
	return sh, nil
}

// itemPreparer builds each item's task: its spec (the batch's with the item's prompt, seed,
// negative prompt, references and overrides), resolved into a run, and the function that
// samples it and encodes its files. An item whose model runs out of memory calls stop with the
// error, to stop the batch.
func (a *app) itemPreparer(env *generation.Env, base generation.Spec, stop context.CancelCauseFunc) func(batch.Item) (batch.Task, error) {
	return func(it batch.Item) (batch.Task, error) {
		ov, err := newOverlay(a.v, it.Overrides)
		if err != nil {
			return batch.Task{}, usageError{err} // the item must change: retrying cannot help
		}
		spec, err := specOf(ov)
		if err != nil {
			return batch.Task{}, err
		}
		spec.Prompt, spec.References = it.Prompt, it.References
		spec.Seed = batch.Seed(base.Seed, it.ID)
		if it.Seed != nil {
			spec.Seed = *it.Seed
		}
		if it.NegativePrompt != "" {
			spec.NegativePrompt = it.NegativePrompt
		}
		for _, ref := range it.ReferencePaths() {
			if _, err := os.Stat(ref); err != nil {
				return batch.Task{}, usageError{fmt.Errorf("reference image %s: %w", ref, err)}
			}
		}
		run, err := env.Prepare(context.Background(), spec)
		if err != nil {
			return batch.Task{}, err
		}
		if err := checkMemory(generation.EstimateMemory(run.Info(), run.Config, spec.Images, spec.ContactSheet), 1, "the item's particles or num-images"); err != nil {
			return batch.Task{}, err
		}
		if err := checkPrompt(run.Model, run.Config); err != nil {
			return batch.Task{}, usageError{err}
		}
		return batch.Task{
			Seed:        spec.Seed,
			Fingerprint: fingerprint(run, run.Config, spec.Seed),
			Render: func(ctx context.Context) ([]batch.File, error) {
				defer run.Close()
				files, err := renderItem(ctx, run)
				if err = allocFailure(err, "--particles, --num-images or --workers"); err != nil {
					if isAllocFailure(err) {
						stop(err)
					}
					return nil, err
				}
				return files, nil
			},
		}, nil
	}
}

// promptChecker is a reward that can tell, before any image exists, whether it can score the
// images of a prompt at all (a classifier that reads its target class from the prompt).
type promptChecker interface {
	CheckPrompt(prompt string) error
}

// checkPrompt refuses a prompt that no run could use: one that names none of a
// class-conditional model's classes, or one the reward cannot score. A batch checks every item
// this way before any work, since such an item would fail the same way on every retry.
func checkPrompt(p pipelines.Pipeline, cfg sampler.Config) error {
	if p.Info().Conditioning == pipelines.ClassCond {
		// Reading the class from the prompt runs no model, so this costs nothing.
		if _, err := p.Condition(context.Background(), nil, cfg.Prompt, cfg.CondOpts); err != nil {
			return err
		}
	}
	return checkRewardPrompt(cfg.Reward, cfg.Prompt)
}

func checkRewardPrompt(r rewards.Reward, prompt string) error {
	if c, ok := r.(promptChecker); ok {
		return c.CheckPrompt(prompt)
	}
	if c, ok := r.(*rewards.Composite); ok {
		for _, part := range c.Rewards() {
			if err := checkRewardPrompt(part, prompt); err != nil {
				return err
			}
		}
	}
	return nil
}

// renderItem samples one item and encodes its files: <id>.png (or <id>.<i>.png for several
// outputs), and with contact sheets <id>.sheet.png per image and <id>.grid.png.
func renderItem(ctx context.Context, run *generation.Run) ([]batch.File, error) {
	res, err := run.Sample(ctx, 0, run.Spec.Images, nil)
	if err != nil {
		return nil, err
	}
	var files []batch.File
	for i, o := range res.Outputs {
		data, err := res.PNG(i)
		if err != nil {
			return nil, err
		}
		f := batch.File{Suffix: ".png", Kind: batch.KindImage, Data: data, Seed: o.Seed, Particle: o.Particle}
		if len(res.Outputs) > 1 {
			f.Suffix = fmt.Sprintf(".%d.png", i)
		}
		if !math.IsNaN(o.Reward) {
			r := o.Reward
			f.Reward = &r
		}
		files = append(files, f)
	}
	if !run.Spec.ContactSheet {
		return files, nil
	}
	images := res.Config.Images
	for g := range images {
		data, err := res.SheetPNG(g)
		if err != nil {
			return nil, err
		}
		suffix := ".sheet.png"
		if images > 1 {
			suffix = fmt.Sprintf(".%d.sheet.png", g)
		}
		files = append(files, batch.File{Suffix: suffix, Kind: "sheet", Data: data, Seed: res.Config.Seed + uint64(g)})
	}
	if len(res.Outputs) > 1 {
		data, err := run.GridPNG(res.GridCells(0))
		if err != nil {
			return nil, err
		}
		files = append(files, batch.File{Suffix: ".grid.png", Kind: "grid", Data: data, Seed: res.Config.Seed})
	}
	return files, nil
}

func (a *app) printBatchSummary(dir string, s *batch.Summary) error {
	if a.v.GetBool("json") {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	w := a.stdout
	it := s.Items
	fmt.Fprintf(w, "batch: %d items in shard %s of %d: %d finished (%d already done, %d generated, %d of them redone), %d failed, %d not run\n",
		it.Shard, s.Shard, it.Total, it.Finished, it.Skipped, it.Generated, it.Redone, it.Failed, it.NotRun)
	// Only files that were written are named: on a full disk the manifest may not be.
	manifest := "no manifest written"
	if s.Manifest != "" {
		manifest = "manifest " + filepath.Join(dir, s.Manifest)
	}
	fmt.Fprintf(w, "images: %d (%d new) in %s; %s\n", s.Images, s.GeneratedImages, dir, manifest)
	if r := s.Reward; r != nil {
		fmt.Fprintf(w, "reward: mean %.4g, std %.4g, min %.4g, median %.4g, max %.4g over %d images\n", r.Mean, r.Std, r.Min, r.Median, r.Max, r.Count)
	}
	fmt.Fprintf(w, "time: %.1fs, %.2f images/s with %d worker(s)\n", s.Seconds, s.ImagesPerSecond, s.Workers)
	for i, f := range s.Failures {
		if i == 5 {
			where := ""
			if s.SummaryFile != "" {
				where = fmt.Sprintf(" (see %s)", filepath.Join(dir, s.SummaryFile))
			}
			fmt.Fprintf(w, "... and %d more failures%s\n", len(s.Failures)-5, where)
			break
		}
		fmt.Fprintf(w, "failed: %s: %s\n", f.ID, f.Error)
	}
	return nil
}

func (a *app) batchMerge(sources []string, partial bool) error {
	dest := a.v.GetString("out")
	ms, err := batch.Merge(dest, sources, partial)
	if err != nil {
		return batchUsage(err)
	}
	if a.v.GetBool("json") {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ms)
	}
	fmt.Fprintf(a.stdout, "merged %d items (%d images, %d shard(s)) from %d folder(s) into %s; %d files copied; manifest %s\n",
		ms.Items, ms.Images, ms.Shards, len(sources), dest, ms.Copied, filepath.Join(dest, ms.Manifest))
	if ms.Total > 0 && ms.Items < ms.Total {
		fmt.Fprintf(a.stdout, "note: the list has %d items; %d are missing\n", ms.Total, ms.Total-ms.Items)
	}
	return nil
}
