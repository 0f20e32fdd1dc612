package finetune

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/pngtext"
)

// writePNG writes sample k's final image atomically, with the prompt and settings in a
// "parameters" text chunk as `fksteer generate` writes them, and returns the file's hex sha256,
// which the manifest records so that a resumed export can tell a damaged image.
func writePNG(path string, g *Group, k int) (string, error) {
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
	img := g.Images.Image(k)
	h := sha256.New()
	err := atomicfile.WriteFunc(path, 0o644, func(f *os.File) error {
		return pngtext.Encode(io.MultiWriter(f, h), img, []pngtext.Entry{{Key: "parameters", Text: params}})
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
