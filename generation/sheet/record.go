package sheet

import (
	"fmt"
	"image"
	"math"
	"slices"

	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/sampler"
)

// Recorder keeps what a contact sheet shows of a sampling run: at every step where rewards were
// evaluated, each particle's x0 prediction, its reward, its group's ESS and the parent each slot
// was copied from. Pass Observe as the run's sampler.Config.Observer (one Recorder per run).
type Recorder struct {
	k     int
	steps []evaluation
}

type evaluation struct {
	step      int
	imgs      pixels.Images
	rewards   []float64
	ess       []float64
	resampled []bool
	parents   []int
	// kept marks an evaluation of states kept after a selection (StepInfo.Kept).
	kept bool
}

// NewRecorder returns a recorder for a run with k particles per group.
func NewRecorder(k int) *Recorder { return &Recorder{k: max(1, k)} }

// Observe records an evaluation step; other steps are ignored. It copies what it keeps, since
// the run reuses its buffers.
func (r *Recorder) Observe(si sampler.StepInfo) {
	if !si.Evaluated || si.Images.N == 0 {
		return
	}
	imgs := si.Images
	imgs.Pix = slices.Clone(imgs.Pix)
	r.steps = append(r.steps, evaluation{
		step: si.Step, imgs: imgs, rewards: slices.Clone(si.Rewards), ess: slices.Clone(si.ESS),
		resampled: slices.Clone(si.Resampled), parents: slices.Clone(si.Parents), kept: si.Kept,
	})
}

// Genealogy draws group g's sheet: one row per evaluation step (each particle's x0 prediction
// with its reward; the label gives the step, 1-based, and the ESS, starred where the group was
// resampled), then the final particles with their final rewards, the selected outputs framed.
// Lines join each particle to the particle of the row above it was copied from.
func (r *Recorder) Genealogy(g int, res *sampler.Result, title string) *image.RGBA {
	return Genealogy(title+"  (* = resampled; framed = selected)", r.rows(g, res))
}

// rows lays out group g's sheet: a row per evaluation, then the final particles, each row with
// the parents that join its cells to the row above.
func (r *Recorder) rows(g int, res *sampler.Result) []Row {
	var rows []Row
	var parents []int // the parents applied after the previous row's step
	for _, e := range r.steps {
		own := slices.Clone(e.parents[g*r.k : (g+1)*r.k])
		row := Row{Parents: parents}
		if e.kept {
			// The row shows states kept after this step's selection: its parents join them to
			// the row above (none for the first row).
			row.Parents = nil
			if len(rows) > 0 {
				row.Parents = own
			}
		}
		label := fmt.Sprintf("step %d", e.step+1)
		if g < len(e.ess) {
			label += fmt.Sprintf(" ESS %.2f", e.ess[g])
			if e.resampled[g] {
				label += "*"
			}
		}
		row.Label = label
		for k := range r.k {
			i := g*r.k + k
			row.Cells = append(row.Cells, Cell{Image: e.imgs.Image(i), Caption: rewardCaption(e.rewards, i)})
		}
		rows = append(rows, row)
		parents = own
		if e.kept {
			// Each slot goes on from its own state to the next row.
			parents = make([]int, r.k)
			for k := range parents {
				parents[k] = k
			}
		}
	}
	final := Row{Label: "final", Parents: parents}
	chosen := map[int]bool{}
	for _, o := range res.Outputs {
		if o.Group == g {
			chosen[o.Particle] = true
		}
	}
	for k := range r.k {
		i := g*r.k + k
		c := Cell{Caption: rewardCaption(res.Rewards, i), Mark: chosen[k]}
		if res.All.N > i {
			c.Image = res.All.Image(i)
		}
		final.Cells = append(final.Cells, c)
	}
	return append(rows, final)
}

func rewardCaption(rs []float64, i int) string {
	if i >= len(rs) || math.IsNaN(rs[i]) {
		return "-"
	}
	return fmt.Sprintf("r=%.3g", rs[i])
}
