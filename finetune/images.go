package finetune

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/fksteer/fksteer/internal/pngtext"
)

// encodePNG encodes sample k's final image with the prompt and settings in a "parameters" text
// chunk, as `fksteer generate` writes them.
func encodePNG(g *Group, k int) ([]byte, error) {
	s := g.Samples[k]
	sch := g.Scheduler
	params := fmt.Sprintf("%s\nSteps: %d, Sampler: %s, Eta: %g, CFG scale: %g, Seed: %d, Slot: %d, Model: %s, Model hash: %s, Method: %s, Reward value: %.6g, Sample: %s",
		g.Prompt, sch.Steps, sch.Sampler, sch.Eta, sch.Guidance, g.Seed, s.Slot, g.Info.Name,
		g.Info.Hash[:min(len(g.Info.Hash), 10)], sch.Method, s.Reward, s.ID)
	if len(s.Rewards) > 1 {
		parts := make([]string, len(s.Rewards))
		for i, r := range s.Rewards {
			parts[i] = fmt.Sprintf("%s=%.6g", r.Name, r.Score)
		}
		params += ", Rewards: " + strings.Join(parts, " ")
	}
	var buf bytes.Buffer
	if err := pngtext.Encode(&buf, g.Images.Image(k), []pngtext.Entry{{Key: "parameters", Text: params}}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
