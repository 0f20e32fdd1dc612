package finetune

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"strings"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/models"
)

// writePNG writes sample k's final image atomically, with the prompt and settings in a
// "parameters" text chunk as `fksteer generate` writes them.
func writePNG(path string, g *Group, k int) error {
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
	img := toImage(g.Images, k)
	return atomicfile.WriteFunc(path, 0o644, func(f *os.File) error {
		return pngtext.Encode(f, img, []pngtext.Entry{{Key: "parameters", Text: params}})
	})
}

// toImage converts image i of a batch in [0, 1] to 8 bits per channel, rounding to nearest.
func toImage(imgs models.Images, i int) image.Image {
	pix := imgs.At(i)
	plane := imgs.H * imgs.W
	q := func(v float32) uint8 { return uint8(math.Round(float64(min(1, max(0, v))) * 255)) }
	if imgs.C == 1 {
		g := image.NewGray(image.Rect(0, 0, imgs.W, imgs.H))
		for j := range plane {
			g.Pix[j] = q(pix[j])
		}
		return g
	}
	img := image.NewNRGBA(image.Rect(0, 0, imgs.W, imgs.H))
	for j := range plane {
		img.SetNRGBA(j%imgs.W, j/imgs.W, color.NRGBA{q(pix[j]), q(pix[plane+j]), q(pix[min(2, imgs.C-1)*plane+j]), 255})
	}
	return img
}
