package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models/glyphs"
	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
)

// The exactness problem of the built-in glyphs model (sampler's exactness tests, GlyphsTV):
// the model's denoiser is the exact posterior mean of a mixture of data images, so a sample is
// (up to the last step's residual noise) one of the images the prompt selects, and the tilted
// target p(x0 | prompt) exp(lambda r(x0)) / Z is an explicit distribution over them. The
// prompt selects the red A on each of the four backgrounds; the reward is the closeness of the
// mean colour to a red, so the target favours the backgrounds that darken the mean least.
const (
	GlyphsPrompt = `red "A"`
	GlyphsReward = "color:target=#c02020"
	GlyphsLambda = 8.0
	GlyphsSteps  = 40
	// GlyphsEta is the DDIM noise of the runs: at eta 1 the posterior-mean steps lose
	// between-image variance and over-pick the grey background by ~0.025 even at 40 steps, so
	// an unsteered run would not reproduce the prior.
	GlyphsEta = 0.5
)

// GlyphsTarget is the exact answer to a steering problem on the glyphs model: the data images a
// prompt selects, their rewards, the prior over them (the prompt's: uniform) and the target
// prior·exp(lambda r) / Z.
type GlyphsTarget struct {
	// Images are the selected images' indices in the data set (glyphs.Load).
	Images []int
	// Rewards holds each selected image's reward, and Prior and Target the distributions over
	// them, in Images order.
	Rewards, Prior, Target []float64

	data *glyphs.Dataset
}

// NewGlyphsTarget computes the exact target of prompt tilted by lambda, reward scoring each
// selected data image as a run scores its outputs (pixels in [0, 1], with the prompt).
func NewGlyphsTarget(ctx context.Context, prompt string, reward rewards.Reward, lambda float64) (*GlyphsTarget, error) {
	d, err := glyphs.Load()
	if err != nil {
		return nil, err
	}
	g := &GlyphsTarget{data: d}
	for m, on := range d.Match(prompt).Mask {
		if on {
			g.Images = append(g.Images, m)
		}
	}
	n := len(g.Images)
	imgs := pixels.NewImages(n, glyphs.Channels, glyphs.Side, glyphs.Side)
	for i, m := range g.Images {
		for j, v := range d.Image(m) {
			imgs.At(i)[j] = (v + 1) / 2
		}
	}
	g.Rewards = make([]float64, n)
	if err := reward.Score(ctx, imgs, prompt, g.Rewards); err != nil {
		return nil, err
	}
	logp := make([]float64, n)
	for i, r := range g.Rewards {
		logp[i] = lambda * r
	}
	z := particles.LogSumExp(logp)
	g.Target, g.Prior = make([]float64, n), make([]float64, n)
	for i := range logp {
		g.Target[i] = math.Exp(logp[i] - z)
		g.Prior[i] = 1 / float64(n)
	}
	return g, nil
}

// Nearest returns the index (into Images) of the selected data image nearest to img, CHW
// values in [0, 1] as a run's outputs hold them, and the RMS distance to it.
func (g *GlyphsTarget) Nearest(img []float32) (int, float64) {
	best, bestD := 0, math.Inf(1)
	for j, m := range g.Images {
		var d float64
		for k, v := range g.data.Image(m) {
			e := float64(img[k]) - (float64(v)+1)/2
			d += e * e
		}
		if d < bestD {
			best, bestD = j, d
		}
	}
	return best, math.Sqrt(bestD / float64(len(img)))
}

// FarRMS is the RMS distance beyond which an output is no selected data image: a sampler that
// integrates the exact denoiser lands within it.
const FarRMS = 0.02

// Histogram returns the distribution over Images of imgs' nearest selected images, image i
// counting weights[i] (nil: 1/imgs.N each), and how many images lay farther than FarRMS from
// every selected one (counted at their nearest all the same).
func (g *GlyphsTarget) Histogram(imgs pixels.Images, weights []float64) (dist []float64, far int) {
	dist = make([]float64, len(g.Images))
	for i := range imgs.N {
		j, rms := g.Nearest(imgs.At(i))
		if rms > FarRMS {
			far++
		}
		w := 1 / float64(imgs.N)
		if weights != nil {
			w = weights[i]
		}
		dist[j] += w
	}
	return dist, far
}

// TV is the total-variation distance between two distributions over the same outcomes: half
// the sum of the absolute differences.
func TV(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += math.Abs(a[i] - b[i])
	}
	return s / 2
}

// SamplingTV is about the TV distance from p of the histogram of n exact draws from p: the
// sampling noise a study of n draws cannot tell from error (the normal approximation of
// E|p̂ᵢ - pᵢ| = sqrt(2 pᵢ(1-pᵢ) / (π n)), summed and halved).
func SamplingTV(p []float64, n int) float64 {
	var s float64
	for _, q := range p {
		s += math.Sqrt(2 * q * (1 - q) / (math.Pi * float64(n)))
	}
	return s / 2
}

// TVTolerance is the TV distance to the exact target within which a sampler counts as
// converged (DTS must reach it at some budget).
const TVTolerance = 0.05

// TVConfig is the exactness study on the glyphs model: every method at each budget draws
// Groups outputs for GlyphsPrompt (GlyphsSpec), each mapped to its nearest selected data image,
// and their distribution is compared with the exact target and the prior.
type TVConfig struct {
	// Methods lists the methods to run; empty means every method. Base runs once, at 1x.
	Methods []sampler.Method
	// Budgets are the multiples of the base NFE (GlyphsSteps) every method but base runs at.
	Budgets []int
	// Overrides sets spec keys for one method's cells over GlyphsSpec, as in SteerConfig.
	Overrides Overrides
	// Groups is the number of outputs per cell: one generation run's images.
	Groups int
	Seed   uint64
	// Progress, if set, receives a line naming the study once everything is open, then one
	// line per finished cell.
	Progress func(string)
}

// DefaultTV is the published exactness study: every method at 2, 4, 8 and 16 times the base
// NFE, 512 outputs each (an exact sampler's histogram is then about 0.02 from the target in TV),
// with DefaultOverrides.
func DefaultTV() TVConfig {
	return TVConfig{Methods: sampler.Methods(), Budgets: []int{2, 4, 8, 16}, Overrides: DefaultOverrides(), Groups: 512, Seed: 1}
}

// GlyphsSpec is the spec of the exactness problem's runs, before the study sets the method, its
// budget, the images and the selection: GlyphsPrompt on the glyphs model, DDIM with GlyphsEta,
// GlyphsSteps steps, no guidance, GlyphsReward tilted by GlyphsLambda, and FK's potentials
// evaluated at steps 8, 16 and 24 (more frequent evaluations collapse FK's particles onto a
// few lineages before the final correction can reweight them).
func GlyphsSpec() generation.Spec {
	eta, guidance, lambda, every, start, end := GlyphsEta, 1.0, GlyphsLambda, 8, 8, 24
	return generation.Spec{Model: pipelines.GlyphsName, Prompt: GlyphsPrompt, Steps: GlyphsSteps, Sampler: "ddim", Eta: &eta,
		Guidance: &guidance, Reward: GlyphsReward, Lambda: &lambda, Potential: "diff", Resampler: "systematic",
		ResampleEvery: every, ResampleStart: &start, ResampleEnd: &end}
}

func (c TVConfig) grid() grid { return grid{c.Methods, c.Budgets} }

// spec is the spec of one cell's runs at u NFE per multiple: FK returns one output drawn by
// its final weights (select sample), the other methods their best.
func (c TVConfig) spec(cl cell, u int) generation.Spec {
	s := GlyphsSpec()
	s.Images, s.Seed, s.Select = c.Groups, c.Seed, "best"
	if cl.m == sampler.FK {
		s.Select = "sample"
	}
	return cellSpec(s, cl, u, c.Overrides)
}

// Check validates c before the model is opened, as SteerConfig.Check does.
func (c TVConfig) Check(env *generation.Env) error {
	if c.Groups < 1 {
		return &generation.SpecError{Err: fmt.Errorf("--groups %d: want at least 1 output per cell", c.Groups)}
	}
	if err := c.grid().check(); err != nil {
		return err
	}
	if err := c.Overrides.check(); err != nil {
		return err
	}
	u := unit(GlyphsSpec(), pipelines.Info{})
	for _, cl := range c.grid().cells() {
		if err := env.Check(c.spec(cl, u), pipelines.Info{}); err != nil {
			return fmt.Errorf("%s: %w", cl, err)
		}
	}
	return nil
}

// TVRow is one method at one budget of the exactness study.
type TVRow struct {
	Method    sampler.Method
	Optimiser bool
	// Multiple is the budget as a multiple of the base NFE, Budget the NFE per output it
	// allows and NFE what the run spent per output.
	Multiple, Budget int
	NFE              float64
	// Sampler is the step rule the cell ran.
	Sampler string
	// Dist is the outputs' distribution over the selected images (GlyphsTarget.Images order),
	// and Target and Prior its TV distance to the exact target and to the prior.
	Dist          []float64
	Target, Prior float64
	// Far counts the outputs farther than FarRMS from every selected image.
	Far  int
	Wall time.Duration
}

// TVTable is what GlyphsTV measured.
type TVTable struct {
	Target *GlyphsTarget
	// Unit is the NFE of one base image; Groups the outputs per cell.
	Unit, Groups int
	Seed         uint64
	Overrides    Overrides
	// Rows are ordered by method (sampler.Methods), then budget.
	Rows []TVRow
}

// GlyphsTV runs the exactness study through env: base at 1x, then every other method at each
// budget, the smallest first. Like Steer it checks c, prepares every run and samples one output
// of each method before the study starts, and stops at the first error, naming the method and
// budget, or when ctx is done.
func GlyphsTV(ctx context.Context, env *generation.Env, c TVConfig) (*TVTable, error) {
	if err := c.Check(env); err != nil {
		return nil, err
	}
	p, err := env.Model(GlyphsSpec())
	if err != nil {
		return nil, err
	}
	u := unit(GlyphsSpec(), p.Info())
	cells := c.grid().cells()
	runs := make([][]*generation.Run, len(cells)) // one run per cell, as smoke wants them
	defer func() {
		for _, rs := range runs {
			for _, r := range rs {
				r.Close()
			}
		}
	}()
	for i, cl := range cells {
		r, err := env.Prepare(ctx, c.spec(cl, u))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cl, err)
		}
		runs[i] = []*generation.Run{r}
	}
	target, err := NewGlyphsTarget(ctx, GlyphsPrompt, runs[0][0].Config.Reward, GlyphsLambda)
	if err != nil {
		return nil, err
	}
	if err := smoke(ctx, cells, runs, "bench glyphs"); err != nil {
		return nil, err
	}
	t := &TVTable{Target: target, Unit: u, Groups: c.Groups, Seed: c.Seed, Overrides: c.Overrides}
	if c.Progress != nil {
		c.Progress(fmt.Sprintf("bench glyphs: %s, %d selected images, budgets %vx of %d NFE, %d outputs each, seed %d",
			GlyphsPrompt, len(target.Images), c.Budgets, u, c.Groups, c.Seed))
	}
	for i, cl := range cells {
		r := runs[i][0]
		res, err := r.Sample(ctx, 0, c.Groups, nil)
		if err != nil {
			return nil, fmt.Errorf("bench glyphs: %s (%d NFE per image): %w", cl, r.Config.Search.Budget, err)
		}
		row := TVRow{Method: cl.m, Optimiser: cl.m.Optimiser(), Multiple: cl.mult, Budget: r.Config.Search.Budget,
			NFE: float64(res.Stats.NFE) / float64(c.Groups), Sampler: string(r.Config.Rule), Wall: res.Stats.Wall / time.Duration(c.Groups)}
		row.Dist, row.Far = target.Histogram(res.Images, nil)
		row.Target, row.Prior = TV(row.Dist, target.Target), TV(row.Dist, target.Prior)
		t.Rows = append(t.Rows, row)
		if c.Progress != nil {
			c.Progress(fmt.Sprintf("%-8s %2dx  NFE/image %6.1f  TV to target %.3f, to prior %.3f", row.Method, row.Multiple, row.NFE, row.Target, row.Prior))
		}
	}
	sortRows(t.Rows, func(r TVRow) cell { return cell{r.Method, r.Multiple} })
	return t, nil
}

// Converged returns the smallest budget multiple at which method m's outputs are within
// TVTolerance of the exact target, and false if none is.
func (t *TVTable) Converged(m sampler.Method) (int, bool) {
	for _, r := range t.Rows { // ordered by budget within a method
		if r.Method == m && r.Target <= TVTolerance {
			return r.Multiple, true
		}
	}
	return 0, false
}

// Print writes the problem and its exact answer, one Markdown row per method and budget, and
// for each sampler (not the optimisers) the budget from which it is within TVTolerance.
func (t *TVTable) Print(w io.Writer) {
	g := t.Target
	overrides := t.Overrides.String()
	if overrides == "" {
		overrides = "none"
	}
	fmt.Fprintf(w, "glyphs, prompt %s (%d data images, prior uniform), reward %s, lambda %g; ddim eta %g, %d steps: one base image is %d NFE, and each budget is a multiple of it. "+
		"FK returns one output drawn by its final weights (evaluations every 8 steps from 8 to 24), the other methods their best; noise and random run on %s (deterministic). "+
		"Per-method settings: %s. %d outputs per cell, seed %d.\n\n",
		GlyphsPrompt, len(g.Images), GlyphsReward, GlyphsLambda, GlyphsEta, GlyphsSteps, t.Unit, DeterministicSampler, overrides, t.Groups, t.Seed)
	fmt.Fprintf(w, "Exact target %s (rewards %s), prior %s: TV %.3f apart. %d exact draws would be about %.3f from the target by sampling noise alone.\n\n",
		floats(g.Target, "%.3f"), floats(g.Rewards, "%.3f"), floats(g.Prior, "%.3f"), TV(g.Target, g.Prior), t.Groups, SamplingTV(g.Target, t.Groups))
	fmt.Fprintf(w, "| method | budget | NFE/image | distribution | TV to target | TV to prior | TV <= %.2f | outputs off the data |\n|---|---|---|---|---|---|---|---|\n", TVTolerance)
	for _, r := range t.Rows {
		within := "no"
		switch {
		case r.Optimiser:
			within = "(optimiser)"
		case r.Method == sampler.Base && r.Prior <= TVTolerance:
			within = "yes, to the prior"
		case r.Method == sampler.Base:
			within = "no, to the prior"
		case r.Target <= TVTolerance:
			within = "yes"
		}
		fmt.Fprintf(w, "| %s | %dx (%d) | %.1f | %s | %.3f | %.3f | %s | %d |\n", methodName(r.Method, r.Optimiser), r.Multiple, r.Budget, r.NFE,
			floats(r.Dist, "%.3f"), r.Target, r.Prior, within, r.Far)
	}
	fmt.Fprintf(w, "\n(opt) marks the optimisers: they concentrate on the reward's maximum, so their TV to the target is expected to be large. "+
		"Base samples the prior: its column compares with the prior.\n")
	var seen []sampler.Method
	for _, r := range t.Rows {
		if r.Optimiser || r.Method == sampler.Base || len(seen) > 0 && seen[len(seen)-1] == r.Method {
			continue
		}
		seen = append(seen, r.Method)
		if m, ok := t.Converged(r.Method); ok {
			fmt.Fprintf(w, "%s: within TV %.2f of the exact target from %dx (%d NFE per output).\n", r.Method, TVTolerance, m, m*t.Unit)
		} else {
			fmt.Fprintf(w, "%s: not within TV %.2f of the exact target at any budget measured.\n", r.Method, TVTolerance)
		}
	}
}

// floats writes values as "[a b c]" in format.
func floats(v []float64, format string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return "[" + strings.Join(s, " ") + "]"
}
