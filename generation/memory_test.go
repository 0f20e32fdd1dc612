package generation_test

import (
	"testing"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// glyphsRow is the estimated bytes per particle row of the glyphs model (3×32×32 states and
// images, guidance off): 7 states (5 of the sampler, the model's input and output) and 2
// images of 3072 float32 values.
const glyphsRow = (7*3072 + 2*3072) * 4

// TestEstimateMemory pins the estimate's terms, each derived from what the sampler, the
// population and the model call allocate per particle row.
func TestEstimateMemory(t *testing.T) {
	mnist := pipelines.Info{Channels: 1, Height: 32, Width: 32, ImageChannels: 3, ImageHeight: 32, ImageWidth: 32, Conditioning: pipelines.ClassCond}
	glyphs := pipelines.Info{Channels: 3, Height: 32, Width: 32, ImageChannels: 3, ImageHeight: 32, ImageWidth: 32, Conditioning: pipelines.VectorCond}
	fk := potentials.Schedule{Every: 2, Start: 2, End: 6} // evaluates at steps 2, 4, 6 and the last
	for _, c := range []struct {
		name   string
		info   pipelines.Info
		cfg    sampler.Config
		images int
		sheets bool
		rows   int
		bytes  uint64
	}{
		// 9 states (5 + guided input and output, 2 rows each) of 1024 and 2 images of 3072.
		{"guided", mnist, sampler.Config{Particles: 4, Steps: 10, Guidance: 2, Rule: schedule.EulerRule}, 2, false, 8, 8 * (9*1024 + 2*3072) * 4},
		// Guidance 1 is off: 7 states.
		{"unguided", mnist, sampler.Config{Particles: 4, Steps: 10, Guidance: 1}, 2, false, 8, 8 * (7*1024 + 2*3072) * 4},
		// Unconditional models are never guided.
		{"unconditional", pipelines.Info{Channels: 1, Height: 32, Width: 32, ImageChannels: 3, ImageHeight: 32, ImageWidth: 32, Conditioning: pipelines.Unconditioned},
			sampler.Config{Particles: 1, Steps: 10, Guidance: 5}, 1, false, 1, (7*1024 + 2*3072) * 4},
		// DPM-Solver++(2M) keeps the previous x0: 8 states.
		{"dpm++2m", mnist, sampler.Config{Particles: 4, Steps: 10, Rule: schedule.DPMpp2MRule}, 2, false, 8, 8 * (8*1024 + 2*3072) * 4},
		// Recording 10 steps: 21 more states and 10 log-probabilities.
		{"record", mnist, sampler.Config{Particles: 4, Steps: 10, Record: true}, 2, false, 8, 8 * (7*1024 + 2*3072 + 21*1024 + 10) * 4},
		// Contact sheets of an FK run: 4 evaluations, one image each.
		{"sheets", mnist, sampler.Config{Particles: 4, Steps: 10, Method: sampler.FK, Resampling: fk}, 2, true, 8, 8 * (7*1024 + 2*3072 + 4*3072) * 4},
		{"glyphs", glyphs, sampler.Config{Particles: 100, Steps: 2, Guidance: 1}, 1, false, 100, 100 * glyphsRow},
	} {
		got := generation.EstimateMemory(c.info, c.cfg, c.images, c.sheets)
		if got.Rows != c.rows || got.Bytes != c.bytes {
			t.Errorf("%s: estimate %d rows, %d bytes; want %d rows, %d bytes", c.name, got.Rows, got.Bytes, c.rows, c.bytes)
		}
	}
}
