// Package bench reproduces fksteer's published measurements from one call: what steering buys on
// a real model (the `fksteer bench steer` table, Steer) and what each execution provider costs
// (RunProviders). It holds experiment logic only: runs are generation specs resolved by a
// generation.Env, and the algorithms it measures live in sampler, particles, potentials and
// rewards.
package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/sampler"
)

// SteerConfig is the steering benchmark: for every target digit and K, Runs independent runs of
// each method, judged by the classifier's top class and by the independent reader.
type SteerConfig struct {
	// Spec is the spec of every run: the model, steps, sampler, eta, guidance and FK settings.
	// The benchmark sets Method, Particles, Images (Runs), Seed (Spec.Seed plus 1,000,000 per
	// digit), Reward (the classifier's log-probability of the digit), Select (best) and the FK
	// schedule (Schedule). Steps must be set: the default schedule is stated for it.
	Spec generation.Spec
	// Classifier is the ONNX classifier that is both the reward and the judge (its top class
	// is a success); it sees the images centre-cropped to 28x28, in [-1, 1].
	Classifier string
	// MNISTDir holds the MNIST test split (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte)
	// that the independent reader of ReaderK neighbours compares the outputs with: it guards
	// against outputs that fool the classifier.
	MNISTDir string
	ReaderK  int
	Digits   []int
	Ks       []int
	// Methods lists the methods to run (base runs at K = 1 only); empty means base, bon and fk.
	Methods []sampler.Method
	Runs    int
	// Progress, if set, receives a line naming the model and the experiment once everything is
	// open, then one line per finished cell.
	Progress func(string)
}

// DefaultSteer is the published benchmark: the unconditional MNIST DiT (no guidance) with the
// stochastic DDIM step, steered toward 3 and 8, 32 runs of every method at K = 1 to 16, with
// paths relative to the repository's root.
func DefaultSteer() SteerConfig {
	eta, guidance, lambda := 1.0, 0.0, generation.DefaultLambda
	shared := filepath.Join("..", "shared", "models", "mnist-cnn-classifier")
	return SteerConfig{
		Spec: generation.Spec{Model: filepath.Join("examples", "mnist-dit-rf.yaml"), Steps: 50, Sampler: "ddim",
			Eta: &eta, Guidance: &guidance, Seed: 1, Potential: "diff", Lambda: &lambda, Resampler: "systematic"},
		Classifier: filepath.Join(shared, "mnist-8.onnx"),
		MNISTDir:   shared,
		ReaderK:    5,
		Digits:     []int{3, 8},
		Ks:         []int{1, 2, 4, 8, 16},
		Methods:    []sampler.Method{sampler.Base, sampler.BestOfN, sampler.FK},
		Runs:       32,
	}
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

// Check validates c before any model is opened, so that a mistake is reported at once rather
// than after the rows before the one it breaks: the counts, the digits, and the spec of every
// cell of the table (env.Check), with the seed of its last digit. Its errors are
// *generation.SpecError or *sampler.ConfigError: c must change.
func (c SteerConfig) Check(env *generation.Env) error {
	bad := func(format string, args ...any) error { return &generation.SpecError{Err: fmt.Errorf(format, args...)} }
	switch {
	case c.Runs < 1:
		return bad("--runs %d: want at least 1 run per method, K and digit", c.Runs)
	case c.ReaderK < 1:
		return bad("--reader-k %d: want at least 1 neighbour", c.ReaderK)
	case c.Spec.Steps < 1:
		return bad("--steps %d: want at least 1 step", c.Spec.Steps)
	case len(c.Digits) == 0 || len(c.Ks) == 0:
		return bad("--digits and --ks: want at least one digit and one particle count")
	}
	for _, d := range c.Digits {
		if d < 0 || d > 9 {
			return bad("--digits: %d is not an MNIST digit (0..9)", d)
		}
	}
	for _, k := range c.Ks {
		if k < 1 {
			return bad("--ks: want particle counts of at least 1, got %d", k)
		}
	}
	// Digit i runs from seed Spec.Seed + i*1,000,000, which must not wrap either.
	if span := uint64(len(c.Digits)-1) * digitSeeds; c.Spec.Seed > math.MaxUint64-span {
		return bad("--seed %d wraps around: digit i uses seed+i*1000000, so the largest usable seed for %d digits is %d", c.Spec.Seed, len(c.Digits), uint64(math.MaxUint64)-span)
	}
	last := len(c.Digits) - 1
	for _, cell := range c.cells() {
		if err := env.Check(c.spec(cell, last), pipelines.Info{}); err != nil {
			return fmt.Errorf("%s at K=%d: %w", cell.m, cell.k, err)
		}
	}
	return nil
}

// digitSeeds separates the seeds of the digits' runs.
const digitSeeds = 1_000_000

// cell is one row of the table: a method at one K.
type cell struct {
	m sampler.Method
	k int
}

// cells lists the table's rows: base at K = 1, then the other methods at every K.
func (c SteerConfig) cells() []cell {
	methods := c.Methods
	if len(methods) == 0 {
		methods = []sampler.Method{sampler.Base, sampler.BestOfN, sampler.FK}
	}
	var cells []cell
	if slices.Contains(methods, sampler.Base) {
		cells = append(cells, cell{sampler.Base, 1})
	}
	for _, k := range c.Ks {
		for _, m := range methods {
			if m != sampler.Base {
				cells = append(cells, cell{m, k})
			}
		}
	}
	return cells
}

// spec is the spec of one cell's runs for the digit c.Digits[di].
func (c SteerConfig) spec(cl cell, di int) generation.Spec {
	s := c.Spec
	s.Method, s.Particles, s.Images, s.Select = string(cl.m), cl.k, c.Runs, "best"
	s.Seed = c.Spec.Seed + uint64(di)*digitSeeds
	s.Reward = fmt.Sprintf("classifier:model=%s,target=%d,crop=28,norm=half,score=logprob", c.Classifier, c.Digits[di])
	sched := c.Schedule()
	s.ResampleEvery, s.ResampleStart, s.ResampleEnd = sched.Every, &sched.Start, &sched.End
	return s
}

// Classifier names the top class of each image, as rewards.Classifier does.
type Classifier interface {
	TopClass(ctx context.Context, imgs pixels.Images, dst []int) error
}

// Row is one method at one K, pooled over the digits.
type Row struct {
	Method    sampler.Method
	K         int
	Runs      int
	Successes int
	// Read counts outputs the independent reader reads as the target digit.
	Read       int
	MeanReward float64
	// NFE is the number of denoiser evaluations per output image (K x steps).
	NFE int
	// WallPerRun is the wall time per output, amortised over the batched runs.
	WallPerRun time.Duration
	// Roots is the mean number of distinct initial particles the final K descend from (FK).
	Roots float64
	// ESS is the mean ESS per evaluation step (FK), with the steps.
	ESS      []float64
	ESSSteps []int
}

// Wilson returns the 95 % Wilson score interval of the success rate.
func (r Row) Wilson() (lo, hi float64) {
	return wilson(r.Successes, r.Runs)
}

func wilson(s, n int) (float64, float64) {
	if n == 0 {
		return 0, 1
	}
	const z = 1.959964
	p := float64(s) / float64(n)
	den := 1 + z*z/float64(n)
	centre := (p + z*z/(2*float64(n))) / den
	half := z * math.Sqrt(p*(1-p)/float64(n)+z*z/(4*float64(n)*float64(n))) / den
	return max(0, centre-half), min(1, centre+half)
}

// SteerTable is what Steer measured, with the settings it ran.
type SteerTable struct {
	// Model is the model's name.
	Model string
	// Config is the sampler configuration of the first run: what every run shares (steps,
	// rule, eta, FK's settings) and the first digit's seed.
	Config sampler.Config
	Digits []int
	Rows   []Row
}

// Steer runs the benchmark through env: base at K = 1, then best-of-K and FK at every K. It
// checks c (Check), then prepares every run (opening the model, and the classifier once per
// digit) and loads the reader before the first run samples, so that nothing it needs is found
// missing after hours of work. It stops at the first error, or when ctx is done.
func Steer(ctx context.Context, env *generation.Env, c SteerConfig) (*SteerTable, error) {
	if err := c.Check(env); err != nil {
		return nil, err
	}
	cells := c.cells()
	runs := make([][]*generation.Run, len(cells)) // per cell, per digit
	for i, cl := range cells {
		for di := range c.Digits {
			r, err := env.Prepare(ctx, c.spec(cl, di))
			if err != nil {
				return nil, err
			}
			if _, ok := r.Config.Reward.(Classifier); !ok {
				return nil, fmt.Errorf("bench steer: reward %s cannot name the top class of an image", r.Config.Reward.Name())
			}
			runs[i] = append(runs[i], r)
		}
	}
	reader, err := LoadReader(filepath.Join(c.MNISTDir, "t10k-images-idx3-ubyte.gz"), filepath.Join(c.MNISTDir, "t10k-labels-idx1-ubyte"), c.ReaderK)
	if err != nil {
		return nil, err
	}
	first := runs[0][0]
	t := &SteerTable{Model: first.Info().Name, Config: first.Chunk(0, c.Runs), Digits: c.Digits}
	progress := func(format string, args ...any) {
		if c.Progress != nil {
			c.Progress(fmt.Sprintf(format, args...))
		}
	}
	progress("bench steer: %s, digits %v, K %v, %d runs each, seed %d", t.Model, c.Digits, c.Ks, c.Runs, c.Spec.Seed)
	for i, cl := range cells {
		row, err := c.measure(ctx, cl, runs[i], reader)
		if err != nil {
			return nil, err
		}
		t.Rows = append(t.Rows, row)
		lo, hi := row.Wilson()
		progress("%-4s K=%-2d success %5.1f%% [%4.1f, %4.1f] read %5.1f%%", row.Method, row.K,
			100*float64(row.Successes)/float64(row.Runs), 100*lo, 100*hi, 100*float64(row.Read)/float64(row.Runs))
	}
	return t, nil
}

// measure samples one cell's runs, one run per digit, and pools what the judges say.
func (c SteerConfig) measure(ctx context.Context, cl cell, runs []*generation.Run, reader *Reader) (Row, error) {
	row := Row{Method: cl.m, K: cl.k}
	var rewardSum, rootSum float64
	var wall time.Duration
	for di, digit := range c.Digits {
		res, err := runs[di].Sample(ctx, 0, c.Runs, nil)
		if err != nil {
			return row, fmt.Errorf("%s K=%d digit %d: %w", cl.m, cl.k, digit, err)
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
		for i, o := range res.Outputs {
			row.Runs++
			if top[i] == digit {
				row.Successes++
			}
			if read[i] == digit {
				row.Read++
			}
			rewardSum += o.Reward
			rootSum += float64(o.Roots)
		}
		wall += res.Stats.Wall
		row.NFE = cl.k * res.Stats.Steps
		for j, p := range res.Stats.ESS {
			if di == 0 {
				row.ESS = append(row.ESS, 0)
				row.ESSSteps = append(row.ESSSteps, p.Step)
			}
			for _, e := range p.ESS {
				row.ESS[j] += e / float64(len(p.ESS)*len(c.Digits))
			}
		}
	}
	row.MeanReward = rewardSum / float64(row.Runs)
	row.Roots = rootSum / float64(row.Runs)
	row.WallPerRun = wall / time.Duration(row.Runs)
	return row, nil
}

// Print writes the settings the table ran, the rows as a Markdown table, then the FK ESS
// traces.
func (t *SteerTable) Print(w io.Writer) {
	cfg, s := t.Config, t.Config.Resampling
	digits := make([]string, len(t.Digits))
	for i, d := range t.Digits {
		digits[i] = strconv.Itoa(d)
	}
	fmt.Fprintf(w, "MNIST DiT, unconditional, %s eta %g, %d steps; reward log p(digit) under the MNIST CNN; digits %s pooled; FK: %s, lambda %g, %s resampling every %d steps from %d to %d; seed %d\n\n",
		cfg.Rule, cfg.Eta, cfg.Steps, strings.Join(digits, ","), cfg.Potential, cfg.Lambda.Value, cfg.Resampler, s.Every, s.Start, s.End, cfg.Seed)
	PrintSteer(w, t.Rows)
}

// PrintSteer writes the rows as a Markdown table, then the FK ESS traces.
func PrintSteer(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| method | K | success (classifier) | 95% interval | read by k-NN reader | mean reward | NFE/image | wall/image | distinct roots |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		lo, hi := r.Wilson()
		roots := "-"
		if r.Method == sampler.FK {
			roots = fmt.Sprintf("%.2f", r.Roots)
		}
		fmt.Fprintf(w, "| %s | %d | %.1f%% (%d/%d) | %.1f–%.1f%% | %.1f%% | %.3f | %d | %.0f ms | %s |\n",
			r.Method, r.K, 100*float64(r.Successes)/float64(r.Runs), r.Successes, r.Runs, 100*lo, 100*hi,
			100*float64(r.Read)/float64(r.Runs), r.MeanReward, r.NFE, float64(r.WallPerRun.Microseconds())/1000, roots)
	}
	for _, r := range rows {
		if r.Method != sampler.FK || len(r.ESS) == 0 {
			continue
		}
		parts := make([]string, len(r.ESS))
		for i, e := range r.ESS {
			parts[i] = fmt.Sprintf("%d:%.2f", r.ESSSteps[i], e)
		}
		fmt.Fprintf(w, "\nFK K=%d mean ESS before resampling, by step: %s", r.K, strings.Join(parts, " "))
	}
	fmt.Fprintln(w)
}
