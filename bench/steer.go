// Package bench reproduces fksteer's published measurements from one call: what steering buys on
// a real model (the `fksteer bench steer` table). It holds experiment logic only; the algorithms
// it measures live in sampler, particles, potentials and rewards.
package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
)

// SteerConfig is the steering benchmark: for every target digit and K, Runs independent runs of
// each method, judged by the classifier's top class and by the independent reader.
type SteerConfig struct {
	Pipeline pipelines.Pipeline
	// Reward returns the steering reward for a target class (log-probability under a classifier).
	Reward func(target int) (rewards.Reward, error)
	// Judge gives the classifier's top class of each image (success); Reader is the independent
	// reader that guards against outputs that fool the classifier.
	Judge  Classifier
	Reader *Reader
	Digits []int
	Ks     []int
	// Methods lists the methods to run (base runs at K = 1 only); empty means base, bon and fk.
	Methods []sampler.Method
	Runs    int
	Seed    uint64
	// Base is the sampler configuration of every run (steps, rule, eta, FK settings); Method,
	// Particles, Images, Seed, Reward and Select are set by the benchmark.
	Base sampler.Config
	// Progress, if set, receives one line per finished cell.
	Progress func(string)
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

// Steer runs the benchmark: base at K = 1, then best-of-K and FK at every K.
func Steer(ctx context.Context, c SteerConfig) ([]Row, error) {
	methods := c.Methods
	if len(methods) == 0 {
		methods = []sampler.Method{sampler.Base, sampler.BestOfN, sampler.FK}
	}
	type cell struct {
		m sampler.Method
		k int
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
	var rows []Row
	for _, cell := range cells {
		row := Row{Method: cell.m, K: cell.k}
		var rewardSum float64
		var rootSum float64
		var wall time.Duration
		for di, digit := range c.Digits {
			r, err := c.Reward(digit)
			if err != nil {
				return nil, err
			}
			cfg := c.Base
			cfg.Method, cfg.Particles, cfg.Images = cell.m, cell.k, c.Runs
			cfg.Seed = c.Seed + uint64(di)*1_000_000
			cfg.Reward, cfg.Select = r, sampler.SelectBest
			res, err := sampler.Run(ctx, c.Pipeline, cfg)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("%s K=%d digit %d: %w", cell.m, cell.k, digit, err)
			}
			r.Close()
			top := make([]int, res.Images.N)
			if err := c.Judge.TopClass(ctx, res.Images, top); err != nil {
				return nil, err
			}
			read, err := c.Reader.Read(ctx, res.Images)
			if err != nil {
				return nil, err
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
			row.NFE = cell.k * res.Stats.Steps
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
		rows = append(rows, row)
		if c.Progress != nil {
			lo, hi := row.Wilson()
			c.Progress(fmt.Sprintf("%-4s K=%-2d success %5.1f%% [%4.1f, %4.1f] read %5.1f%%", row.Method, row.K,
				100*float64(row.Successes)/float64(row.Runs), 100*lo, 100*hi, 100*float64(row.Read)/float64(row.Runs)))
		}
	}
	return rows, nil
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
