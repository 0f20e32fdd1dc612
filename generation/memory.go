package generation

import (
	"fmt"

	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// Memory is the estimated memory of one sampler.Run, in bytes, with the figures that decide it.
type Memory struct {
	// Rows is images × particles: every buffer below is per row.
	Rows  int
	Bytes uint64
}

// EstimateMemory estimates the memory one sampler.Run of cfg holds for images groups on the model
// info describes, from what sampler/, particles/ and pipelines/ allocate per particle row (float32
// values):
//
//   - 5 states: the population (particles.Population.X), x0 and eps predictions, the step mean and
//     its noise (sampler/engine.go); a 6th for DPM-Solver++(2M)'s previous x0;
//   - the model call's input and output (pipelines' prepared call): 2 states, twice over with
//     classifier-free guidance, whose batch holds an unconditional and a conditional row;
//   - 2 decoded images: every particle's, and the selected outputs;
//   - with recording (export): every step's state and mean, 2n+1 states, and n log-probabilities;
//   - with contact sheets: one decoded image per FK, svdd or beam evaluation;
//   - per image, what a search method holds beside the rows (searchValues).
//
// It is a floor: the model's intermediate activations are not known before it runs and come on
// top (measured: ~150 KB per row for glyphs, ~6 MB per guided row for the MNIST DiT). When they
// do not fit, ONNX Runtime reports an allocation failure.
func EstimateMemory(info pipelines.Info, cfg sampler.Config, images int, sheets bool) Memory {
	rows := max(1, images) * max(1, cfg.Particles)
	dim, img := uint64(info.Len()), uint64(info.ImageChannels*info.ImageHeight*info.ImageWidth)
	states := uint64(5)
	if cfg.Rule == schedule.DPMpp2MRule {
		states++
	}
	call := uint64(1)
	if cfg.Guidance > 1 && info.Conditioning != pipelines.Unconditioned {
		call = 2
	}
	states += 2 * call
	n := uint64(max(1, cfg.Steps))
	perRow := states*dim + 2*img
	if cfg.Record {
		perRow += (2*n+1)*dim + n
	}
	if sheets && cfg.Method == sampler.FK {
		perRow += uint64(cfg.Resampling.Evaluations(int(n))) * img
	}
	perImage := searchValues(cfg, dim, img, call, n)
	if sheets && (cfg.Method == sampler.SVDD || cfg.Method == sampler.Beam) {
		perRow += n * img // at most one evaluation a step
	}
	return Memory{Rows: rows, Bytes: (uint64(rows)*perRow + uint64(max(1, images))*perImage) * 4}
}

// searchValues is what a search method holds per image beyond the population's rows, in float32
// values: svdd's and beam's candidates (their states, predictions and model call, and an image
// each, per row), the noise searches' round of N solves and their K kept samples (noise.go),
// and the dts tree's nodes, a state and its two predictions each, at most one per NFE spent
// (dts.go).
func searchValues(cfg sampler.Config, dim, img, call, n uint64) uint64 {
	s, k := cfg.Search, uint64(max(1, cfg.Particles))
	switch cfg.Method {
	case sampler.SVDD, sampler.Beam:
		per := uint64(max(1, s.Candidates))
		return k * (per*((3+2*call)*dim+img) + dim + img)
	case sampler.Noise, sampler.Random:
		nb := uint64(max(1, s.Neighbours))
		return nb*((6+2*call)*dim+img) + 2*k*dim
	case sampler.DTS, sampler.DTSStar:
		nodes := uint64(max(1, s.Iterations)) * n
		if s.Budget > 0 {
			nodes = uint64(s.Budget)
		}
		return nodes*3*dim + (2*call+3)*dim + img
	}
	return 0
}

// Memory estimates what sampling images of the run at once holds (EstimateMemory).
func (r *Run) Memory(images int) Memory {
	return EstimateMemory(r.Info(), *r.withInit(), images, r.Spec.ContactSheet)
}

// checkMemory refuses a run whose images, sampled at once, need more memory than Env.Available
// reports, before any of it is allocated.
func (e *Env) checkMemory(r *Run) error {
	if e.Available == nil {
		return nil
	}
	avail, ok := e.Available()
	need := r.Memory(r.Spec.Images)
	if !ok || need.Bytes <= avail {
		return nil
	}
	return &SpecError{fmt.Errorf("this run needs at least %d MiB of memory (%d particle rows) but %d MiB is available: lower the particles or the number of images", need.Bytes>>20, need.Rows, avail>>20)}
}
