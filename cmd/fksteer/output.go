package main

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/sampler"
)

// writtenImage is one image file a run wrote, as --json reports it.
type writtenImage struct {
	Path      string  `json:"path"`
	Seed      uint64  `json:"seed"`
	Particle  int     `json:"particle"`
	Reward    float64 `json:"reward,omitempty"`
	LogWeight float64 `json:"log_weight,omitempty"`
	Roots     int     `json:"distinct_roots,omitempty"`
}

// writeImages writes a run's outputs as PNG files named by seed (and particle when a run returns
// several per image), each written atomically with its settings in a "parameters" text chunk.
func writeImages(dir string, info pipelines.Info, cfg sampler.Config, res *sampler.Result, rewardSpec string) ([]writtenImage, error) {
	perGroup := len(res.Outputs) / cfg.Images
	var out []writtenImage
	for i, o := range res.Outputs {
		name := fmt.Sprintf("%d.png", o.Seed)
		if perGroup > 1 {
			name = fmt.Sprintf("%d-%d.png", o.Seed, o.Particle)
		}
		path := filepath.Join(dir, name)
		params := parameters(info, cfg, o, rewardSpec)
		img := toImage(res.Images, i)
		err := atomicfile.WriteFunc(path, 0o644, func(f *os.File) error {
			return pngtext.Encode(f, img, []pngtext.Entry{{Key: "parameters", Text: params}})
		})
		if err != nil {
			return out, err
		}
		w := writtenImage{Path: path, Seed: o.Seed, Particle: o.Particle, LogWeight: o.LogWeight, Roots: o.Roots}
		if !math.IsNaN(o.Reward) {
			w.Reward = o.Reward
		}
		out = append(out, w)
	}
	return out, nil
}

// parameters formats settings the way other diffusion tools do ("parameters" chunk): the prompt
// on the first line, then "Key: value" pairs.
func parameters(info pipelines.Info, cfg sampler.Config, o sampler.Output, rewardSpec string) string {
	pairs := [][2]string{
		{"Steps", fmt.Sprint(cfg.Steps)},
		{"Sampler", string(cfg.Rule)},
		{"Eta", fmt.Sprint(cfg.Eta)},
		{"CFG scale", fmt.Sprint(cfg.Guidance)},
		{"Seed", fmt.Sprint(o.Seed)},
		{"Size", fmt.Sprintf("%dx%d", info.ImageWidth, info.ImageHeight)},
		{"Model", info.Name},
		{"Model hash", info.Hash[:min(len(info.Hash), 10)]},
	}
	if cfg.CondOpts.Class != nil {
		pairs = append(pairs, [2]string{"Class", fmt.Sprint(*cfg.CondOpts.Class)})
	}
	pairs = append(pairs, [2]string{"Method", string(cfg.Method)}, [2]string{"Particles", fmt.Sprint(cfg.Particles)})
	if cfg.Method == sampler.FK {
		pairs = append(pairs,
			[2]string{"Potential", string(cfg.Potential)},
			[2]string{"Lambda", lambdaString(cfg.Lambda)},
			[2]string{"Resampling", resamplingString(cfg.Resampling)},
			[2]string{"Resampler", string(cfg.Resampler)},
		)
	}
	if cfg.Method != sampler.Base || rewardSpec != "" {
		pairs = append(pairs, [2]string{"Select", string(cfg.Select)}, [2]string{"Particle", fmt.Sprint(o.Particle)})
	}
	if rewardSpec != "" {
		pairs = append(pairs, [2]string{"Reward", rewardSpec}, [2]string{"Reward value", fmt.Sprintf("%.6g", o.Reward)})
	}
	var b strings.Builder
	b.WriteString(cfg.Prompt)
	for i, p := range pairs {
		if i == 0 {
			b.WriteString("\n")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(p[0] + ": " + p[1])
	}
	return b.String()
}

// toImage converts image i of a batch in [0, 1] to 8-bit, rounding to nearest.
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
		img.SetNRGBA(j%imgs.W, j/imgs.W, color.NRGBA{q(pix[j]), q(pix[plane+j]), q(pix[2*plane+j]), 255})
	}
	return img
}

func lambdaString(l potentials.Lambda) string {
	if l.Ramp == "" || l.Ramp == potentials.Constant {
		return fmt.Sprint(l.Value)
	}
	return fmt.Sprintf("%g->%g %s", l.Start, l.Value, l.Ramp)
}

func resamplingString(s potentials.Schedule) string {
	out := fmt.Sprintf("every %d from %d to %d", s.Every, s.Start, s.End)
	if s.Adaptive() {
		out += fmt.Sprintf(" when ESS < %g K", s.ESSThreshold)
	}
	return out
}
