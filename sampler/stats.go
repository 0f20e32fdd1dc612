package sampler

import (
	"fmt"
	"strings"
	"time"

	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/schedule"
)

// Stats describes a run's compute: what it evaluated and where its time went.
type Stats struct {
	// Steps is the number of steps walked (Config.StepsWalked).
	Steps int
	// NFE counts the denoiser rows evaluated, the unit search methods are compared and budgeted
	// in (Config.Budget): a state evaluated with classifier-free guidance counts 2.
	NFE int
	// ModelCalls counts the denoiser's runs (one per step for all rows, whatever the method).
	ModelCalls int
	// RewardCalls counts the reward's calls and RewardEvals the images they scored.
	RewardCalls, RewardEvals int
	// Decoded and Previewed count the states turned into images by the pipeline's decoder and
	// by its preview decoder (pipelines.Previewer).
	Decoded, Previewed int
	// Resamplings counts group resampling events.
	Resamplings int
	// ESS holds, for every potential evaluation, each group's effective sample size before any
	// resampling at that step.
	ESS []ESSPoint
	// AuxCalls counts the runs of the pipeline's other models (text encoders, VAE).
	AuxCalls int
	// Wall is the run's total time; ModelTime, AuxTime and RewardTime the parts inside the
	// denoiser's runs, the pipeline's other models' runs (text encoders, VAE) and the reward;
	// EngineTime the rest (fksteer's own work: step maths, resampling, conversions, decoding
	// without a model).
	Wall, ModelTime, AuxTime, RewardTime, EngineTime time.Duration
}

// ESSPoint is the effective sample size of every group at one step.
type ESSPoint struct {
	Step int
	ESS  []float64
	// Resampled[g] tells whether group g was resampled at this step.
	Resampled []bool
}

// ESSTrace formats the first group's ESS per evaluation step, e.g. "5:3.2* 10:4.0" (a star marks
// a resampling).
func (s Stats) ESSTrace() string {
	var b strings.Builder
	for i, p := range s.ESS {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%.2f", p.Step, p.ESS[0])
		if p.Resampled[0] {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// StepInfo is what an observer sees after each step. Its slices belong to the run: read them
// during the callback, copy what must outlive it.
type StepInfo struct {
	// Step is the step's index among the Steps the run walks (Config.StepsWalked).
	Step, Steps int
	From, To    schedule.Level
	// Evaluated tells whether rewards were computed at this step; Rewards then holds one per row
	// (of the x0 predictions, before resampling) and ESS one per group.
	Evaluated bool
	Rewards   []float64
	ESS       []float64
	Resampled []bool
	// Images holds, at evaluation steps, the decoded x0 predictions of every row (what the
	// reward scored; previews when the pipeline is a pipelines.Previewer). Parents[g*K+k] is the slot within group g that slot k was copied from at
	// this step (k itself where the group was not resampled).
	Images  pixels.Images
	Parents []int
	// Kept tells that Images and Rewards are those of the states kept after this step's
	// selection (svdd's candidates, beam's children, dts's chosen paths), so that Parents join
	// them to the previous evaluation's rows; FK's (Kept false) are the particles before
	// resampling, and Parents join them to the next evaluation's.
	Kept bool
}
