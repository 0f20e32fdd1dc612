// Package bench reproduces fksteer's published measurements from one call: the inference-time
// scaling study of the steering and search methods on a real model (Steer, the `fksteer bench
// steer` table and plot) with its exactness check on the built-in glyphs model (GlyphsTV), and
// what each execution provider costs (RunProviders). It holds experiment logic only: runs are
// generation specs resolved by a generation.Env, and the algorithms it measures live in
// sampler, particles, potentials and rewards.
package bench

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/sampler"
)

// SteerConfig is the inference-time scaling study on the MNIST DiT (DESIGN.md section 6):
// every method at several multiples of the base NFE (one unsteered image's), steered toward
// each target digit with the classifier's log-probability of it as reward, Runs runs per
// method, budget and digit, judged by the classifier's top class and by the independent
// reader.
type SteerConfig struct {
	// Spec is the base spec of every run: the model, steps, sampler, eta, guidance, FK's
	// settings and the search methods' settings. The study sets Method, Budget (the cell's
	// multiple of one base image's NFE; Particles is left 0, for the budget to size), Images
	// (Runs), Seed (Spec.Seed plus 1,000,000 per digit), Reward (the classifier's
	// log-probability of the digit), Select (best) and the FK schedule (Schedule); noise and
	// random run on DeterministicSampler. Steps must be set: the default schedule is stated
	// for it.
	Spec generation.Spec
	// Methods lists the methods to run; empty means every method (sampler.Methods). Base runs
	// once, at 1x: the reference row.
	Methods []sampler.Method
	// Budgets are the multiples of the base NFE that every method but base runs at.
	Budgets []int
	// Overrides sets spec keys for one method's cells over Spec (e.g. dts: Lambda); the keys
	// the study sets itself are refused.
	Overrides Overrides
	// Runs is the number of runs per cell and digit: the images of one generation run.
	Runs   int
	Digits []int
	// Classifier is the ONNX classifier that is both the reward and the first judge (its top
	// class is a success); it sees the images centre-cropped to 28x28, in [-1, 1].
	Classifier string
	// MNISTDir holds the MNIST test split (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte)
	// that the independent reader of ReaderK neighbours compares the outputs with: it guards
	// against outputs that fool the classifier (reward hacking).
	MNISTDir string
	ReaderK  int
	// Progress, if set, receives a line naming the model and the study once everything is
	// open, then one line per finished cell.
	Progress func(string)
}

// DefaultSteer is the published study: the unconditional MNIST DiT (no guidance) with 50
// stochastic DDIM steps, steered toward 3 and 8, 32 runs per digit of every method at 2, 4, 8
// and 16 times the base NFE (base once, at 1x), with DefaultOverrides and paths relative to
// the repository's root.
func DefaultSteer() SteerConfig {
	eta, guidance, lambda := 1.0, 0.0, generation.DefaultLambda
	shared := filepath.Join("..", "shared", "models", "mnist-cnn-classifier")
	return SteerConfig{
		Spec: generation.Spec{Model: filepath.Join("examples", "mnist-dit-rf.yaml"), Steps: 50, Sampler: "ddim",
			Eta: &eta, Guidance: &guidance, Seed: 1, Potential: "diff", Lambda: &lambda, Resampler: "systematic"},
		Methods:    sampler.Methods(),
		Budgets:    []int{2, 4, 8, 16},
		Overrides:  DefaultOverrides(),
		Classifier: filepath.Join(shared, "mnist-8.onnx"),
		MNISTDir:   shared,
		ReaderK:    5,
		Digits:     []int{3, 8},
		Runs:       32,
	}
}

// DefaultOverrides are the studies' per-method settings: noise search solves 2 neighbours a
// round (a round of N neighbours costs N base images), so that the budgets buy it 1, 2, 4 and
// 8 rounds, where its default 4 would give a lone round of 2 at 2x and 1, 2 and 4 rounds above.
func DefaultOverrides() Overrides {
	return Overrides{sampler.Noise: {Neighbours: 2}}
}

// DefaultSteerSchedule returns FK's schedule in the benchmark unless Spec sets one, stated for
// 50 steps. Measured at K = 4 (64 runs, seed 1): every 5 steps from 5 to 30 (the reference's
// text-to-image schedule) reached 69 %, to 45 75 %, every 2 steps from 2 to 46 97 %. The digit
// is settled within a few steps of noisy predictions, so frequent resampling matters more here.
func DefaultSteerSchedule() potentials.Schedule {
	return potentials.Schedule{Every: 2, Start: 2, End: 46}
}

// Schedule is the FK schedule the benchmark runs: Spec's ResampleEvery, ResampleStart and
// ResampleEnd where set, DefaultSteerSchedule's otherwise. At fewer steps than 50 a default end
// (or start) is clamped to the last step, so that the table's header says what runs; a value
// Spec sets is kept, and Check refuses it if it lies beyond the steps.
func (c SteerConfig) Schedule() potentials.Schedule {
	s := DefaultSteerSchedule()
	if c.Spec.ResampleEvery != 0 {
		s.Every = c.Spec.ResampleEvery
	}
	if c.Spec.ResampleStart != nil {
		s.Start = *c.Spec.ResampleStart
	}
	last := max(0, c.Spec.Steps-1)
	if c.Spec.ResampleEnd != nil {
		s.End = *c.Spec.ResampleEnd
	} else {
		s.End = max(min(s.End, last), min(s.Start, last))
	}
	if c.Spec.ResampleStart == nil {
		s.Start = min(s.Start, s.End)
	}
	return s
}

func (c SteerConfig) grid() grid { return grid{c.Methods, c.Budgets} }

// Check validates c before any model is opened, so that a mistake is reported at once rather
// than after the cells before the one it breaks: the counts, the digits, the budgets, the
// overrides, and the spec of every cell (env.Check, budgeted as if the model ran Spec.Steps
// steps without guidance twins unless Spec's guidance asks for them), with the seed of its last
// digit. Its errors are *generation.SpecError or *sampler.ConfigError: c must change.
func (c SteerConfig) Check(env *generation.Env) error {
	bad := func(format string, args ...any) error { return &generation.SpecError{Err: fmt.Errorf(format, args...)} }
	switch {
	case c.Runs < 1:
		return bad("--runs %d: want at least 1 run per cell and digit", c.Runs)
	case c.ReaderK < 1:
		return bad("--reader-k %d: want at least 1 neighbour", c.ReaderK)
	case c.Spec.Steps < 1:
		return bad("--steps %d: want at least 1 step", c.Spec.Steps)
	case len(c.Digits) == 0:
		return bad("--digits: want at least one digit")
	}
	for i, d := range c.Digits {
		if d < 0 || d > 9 {
			return bad("--digits: %d is not an MNIST digit (0..9)", d)
		}
		if slices.Contains(c.Digits[:i], d) {
			return bad("--digits: %d is listed twice", d)
		}
	}
	if err := c.grid().check(); err != nil {
		return err
	}
	if err := c.Overrides.check(); err != nil {
		return err
	}
	// Digit i runs from seed Spec.Seed + i*1,000,000, which must not wrap either.
	if span := uint64(len(c.Digits)-1) * digitSeeds; c.Spec.Seed > math.MaxUint64-span {
		return bad("--seed %d wraps around: digit i uses seed+i*1000000, so the largest usable seed for %d digits is %d", c.Spec.Seed, len(c.Digits), uint64(math.MaxUint64)-span)
	}
	u, last := unit(c.Spec, pipelines.Info{}), len(c.Digits)-1
	for _, cl := range c.grid().cells() {
		if err := env.Check(c.spec(cl, last, u), pipelines.Info{}); err != nil {
			return fmt.Errorf("%s: %w", cl, err)
		}
	}
	return nil
}

// digitSeeds separates the seeds of the digits' runs.
const digitSeeds = 1_000_000

// spec is the spec of one cell's runs for the digit c.Digits[di], at u NFE per multiple.
func (c SteerConfig) spec(cl cell, di, u int) generation.Spec {
	s := c.Spec
	s.Images, s.Select = c.Runs, "best"
	s.Seed = c.Spec.Seed + uint64(di)*digitSeeds
	s.Reward = fmt.Sprintf("classifier:model=%s,target=%d,crop=28,norm=half,score=logprob", c.Classifier, c.Digits[di])
	sched := c.Schedule()
	s.ResampleEvery, s.ResampleStart, s.ResampleEnd = sched.Every, &sched.Start, &sched.End
	return cellSpec(s, cl, u, c.Overrides)
}

// Classifier names the top class of each image, as rewards.Classifier does.
type Classifier interface {
	TopClass(ctx context.Context, imgs pixels.Images, dst []int) error
}

// Tally is what the judges said of one cell's runs for one digit, or pooled over the digits.
type Tally struct {
	// Classifier counts the outputs whose top class under the classifier is the digit; Reader
	// those the k-NN reader reads as the digit.
	Classifier, Reader Rate
	// Reward is the mean final reward; Roots the mean number of distinct initial particles an
	// output's group's final particles descend from.
	Reward, Roots float64
	// Distance is the mean pairwise L2 distance between the outputs (MeanPairwiseDistance);
	// pooled, the mean of the digits' (outputs for different digits are not compared).
	Distance float64
	// NFE is the denoiser evaluations the runs spent per output (Stats.NFE / Runs), not the
	// budget.
	NFE float64
	// Wall is the wall time per output, amortised over the batched runs.
	Wall time.Duration
}

// HackingPoints is the difference between the classifier's and the reader's success rates, in
// percentage points, beyond which a cell is flagged as reward hacking.
const HackingPoints = 20

// Gap is the classifier's success rate minus the reader's, in percentage points.
func (t Tally) Gap() float64 { return 100 * (t.Classifier.P() - t.Reader.P()) }

// Hacking reports whether the classifier's and the reader's success rates differ by more than
// HackingPoints: the method found outputs one judge accepts and the other does not.
func (t Tally) Hacking() bool { return math.Abs(t.Gap()) > HackingPoints }

// pool adds up the digits' tallies: counts add, means are weighted by the runs, Distance is
// the digits' mean.
func pool(ts []Tally) Tally {
	var p Tally
	var n, dists float64
	var wall time.Duration
	for _, t := range ts {
		w := float64(t.Classifier.Runs)
		p.Classifier, p.Reader = p.Classifier.add(t.Classifier), p.Reader.add(t.Reader)
		p.Reward += w * t.Reward
		p.Roots += w * t.Roots
		p.NFE += w * t.NFE
		wall += time.Duration(t.Classifier.Runs) * t.Wall
		n += w
		if !math.IsNaN(t.Distance) {
			p.Distance += t.Distance
			dists++
		}
	}
	p.Reward, p.Roots, p.NFE = p.Reward/n, p.Roots/n, p.NFE/n
	p.Wall = wall / time.Duration(max(1, p.Classifier.Runs))
	p.Distance /= dists // NaN when no digit had two outputs
	return p
}

// Row is one method at one budget: each digit's tally and the pooled one.
type Row struct {
	Method sampler.Method
	// Optimiser marks methods that climb the reward rather than sample a distribution
	// (sampler.Method.Optimiser).
	Optimiser bool
	// Multiple is the budget as a multiple of the base NFE, and Budget the NFE per image it
	// allows.
	Multiple, Budget int
	// Sampler is the step rule the cell ran (DeterministicSampler for noise and random).
	Sampler string
	// Digits holds one tally per digit of SteerTable.Digits, and Pooled their sum.
	Digits []Tally
	Pooled Tally
}

// Hacking reports whether the cell is flagged as reward hacking, pooled or for any digit.
func (r Row) Hacking() bool {
	return r.Pooled.Hacking() || slices.ContainsFunc(r.Digits, Tally.Hacking)
}

// SteerTable is what Steer measured, with the settings it ran.
type SteerTable struct {
	// Model is the model's name.
	Model string
	// Config is the sampler configuration of the first cell that runs the study's own sampler,
	// for its first digit: what every run shares (steps, rule, eta, FK's settings) and the
	// first digit's seed.
	Config sampler.Config
	// Unit is the NFE of one base image; a cell at multiple b is budgeted b*Unit per image.
	Unit      int
	Runs      int
	Digits    []int
	ReaderK   int
	Overrides Overrides
	// Rows are ordered by method (sampler.Methods), then budget.
	Rows []Row
}

// Steer runs the study through env: base at 1x, then every other method at each budget, the
// smallest first. It checks c (Check), then prepares every run (opening the model, and the
// classifier once per digit), loads the reader and samples one image of each method at its
// smallest budget before the study starts, so that nothing it needs, and no method that fails,
// is found after hours of work. It stops at the first error, naming the method and budget, or
// when ctx is done.
func Steer(ctx context.Context, env *generation.Env, c SteerConfig) (*SteerTable, error) {
	if err := c.Check(env); err != nil {
		return nil, err
	}
	p, err := env.Model(c.Spec)
	if err != nil {
		return nil, err
	}
	u := unit(c.Spec, p.Info())
	cells := c.grid().cells()
	runs := make([][]*generation.Run, len(cells)) // per cell, per digit
	defer func() {
		for _, rs := range runs {
			for _, r := range rs {
				r.Close()
			}
		}
	}()
	for i, cl := range cells {
		for di := range c.Digits {
			r, err := env.Prepare(ctx, c.spec(cl, di, u))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", cl, err)
			}
			runs[i] = append(runs[i], r)
			if _, ok := r.Config.Reward.(Classifier); !ok {
				return nil, fmt.Errorf("bench steer: reward %s cannot name the top class of an image", r.Config.Reward.Name())
			}
		}
	}
	reader, err := LoadReader(filepath.Join(c.MNISTDir, "t10k-images-idx3-ubyte.gz"), filepath.Join(c.MNISTDir, "t10k-labels-idx1-ubyte"), c.ReaderK)
	if err != nil {
		return nil, err
	}
	if err := smoke(ctx, cells, runs, "bench steer"); err != nil {
		return nil, err
	}
	t := &SteerTable{Model: p.Info().Name, Config: sharedConfig(cells, runs, c.Runs), Unit: u, Runs: c.Runs,
		Digits: c.Digits, ReaderK: c.ReaderK, Overrides: c.Overrides}
	progress := func(format string, args ...any) {
		if c.Progress != nil {
			c.Progress(fmt.Sprintf(format, args...))
		}
	}
	progress("bench steer: %s, digits %v, budgets %vx of %d NFE, %d runs each, seed %d", t.Model, c.Digits, c.Budgets, u, c.Runs, c.Spec.Seed)
	for i, cl := range cells {
		row, err := c.measure(ctx, cl, runs[i], reader)
		if err != nil {
			return nil, err
		}
		t.Rows = append(t.Rows, row)
		pt := row.Pooled
		clo, chi := pt.Classifier.Wilson()
		progress("%-8s %2dx  NFE/image %6.1f  classifier %5.1f%% [%4.1f, %4.1f]  reader %5.1f%%  wall/image %s",
			row.Method, row.Multiple, pt.NFE, 100*pt.Classifier.P(), 100*clo, 100*chi, 100*pt.Reader.P(), pt.Wall.Round(time.Millisecond))
	}
	sortRows(t.Rows, func(r Row) cell { return cell{r.Method, r.Multiple} })
	return t, nil
}

// smoke samples one image of each method's first cell (its smallest budget), first digit, so
// that a method that cannot run stops the study before it starts.
func smoke(ctx context.Context, cells []cell, runs [][]*generation.Run, what string) error {
	var seen []sampler.Method
	for i, cl := range cells {
		if slices.Contains(seen, cl.m) {
			continue
		}
		seen = append(seen, cl.m)
		if _, err := runs[i][0].Sample(ctx, 0, 1, nil); err != nil {
			return fmt.Errorf("%s: %s fails (one image at %dx, before the study starts): %w", what, cl.m, cl.mult, err)
		}
	}
	return nil
}

// sharedConfig is the configuration of the first cell on the study's own sampler (not noise's
// or random's deterministic one), first digit, for n images: what the table's header states.
func sharedConfig(cells []cell, runs [][]*generation.Run, n int) sampler.Config {
	i := slices.IndexFunc(cells, func(cl cell) bool { return cl.m != sampler.Noise && cl.m != sampler.Random })
	return runs[max(i, 0)][0].Chunk(0, n)
}

// measure samples one cell's runs, one generation run per digit, and tallies what the judges
// say.
func (c SteerConfig) measure(ctx context.Context, cl cell, runs []*generation.Run, reader *Reader) (Row, error) {
	cfg := runs[0].Config
	row := Row{Method: cl.m, Optimiser: cl.m.Optimiser(), Multiple: cl.mult, Budget: cfg.Search.Budget, Sampler: string(cfg.Rule)}
	for di, digit := range c.Digits {
		res, err := runs[di].Sample(ctx, 0, c.Runs, nil)
		if err != nil {
			return row, fmt.Errorf("bench steer: %s (%d NFE per image), digit %d: %w", cl, row.Budget, digit, err)
		}
		top := make([]int, res.Images.N)
		// The digit's reward is the classifier: it judges too (its top class is the same
		// whatever the target).
		if err := runs[di].Config.Reward.(Classifier).TopClass(ctx, res.Images, top); err != nil {
			return row, err
		}
		read, err := reader.Read(ctx, res.Images)
		if err != nil {
			return row, err
		}
		var t Tally
		for i, o := range res.Outputs {
			t.Classifier.Runs++
			t.Reader.Runs++
			if top[i] == digit {
				t.Classifier.Successes++
			}
			if read[i] == digit {
				t.Reader.Successes++
			}
			t.Reward += o.Reward
			t.Roots += float64(o.Roots)
		}
		n := len(res.Outputs)
		t.Reward /= float64(n)
		t.Roots /= float64(n)
		t.Distance = MeanPairwiseDistance(res.Images)
		t.NFE = float64(res.Stats.NFE) / float64(c.Runs)
		t.Wall = res.Stats.Wall / time.Duration(c.Runs)
		row.Digits = append(row.Digits, t)
	}
	row.Pooled = pool(row.Digits)
	return row, nil
}
