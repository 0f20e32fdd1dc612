package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
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
	// Parts breaks the reward down for composites and text-reading rewards.
	Parts []partRecord `json:"reward_parts,omitempty"`
}

// partRecord is one part of a reward in --json output; Text is set only for parts that read
// text, and is "" when they read nothing.
type partRecord struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
	Score  float64 `json:"score"`
	Text   *string `json:"text,omitempty"`
}

// explainParts reports a breakdown only where it says more than the total: several parts, or
// text that was read.
func explainParts(parts []rewards.PartScore) []partRecord {
	if len(parts) < 2 && !(len(parts) == 1 && parts[0].HasText) {
		return nil
	}
	out := make([]partRecord, len(parts))
	for i, p := range parts {
		out[i] = partRecord{Name: p.Name, Weight: p.Weight, Score: p.Score}
		if p.HasText {
			text := p.Text
			out[i].Text = &text
		}
	}
	return out
}

// partsString formats a breakdown as "0.7*preference=0.912; 0.3*ocr=0.75", and the text read
// as a quoted string with lines joined by " / ".
func partsString(parts []partRecord) (scores, text string) {
	var s, t []string
	for _, p := range parts {
		s = append(s, fmt.Sprintf("%g*%s=%.4g", p.Weight, p.Name, p.Score))
		if p.Text != nil {
			t = append(t, strings.ReplaceAll(*p.Text, "\n", " / "))
		}
	}
	if len(t) > 0 {
		text = strconv.Quote(strings.Join(t, " / "))
	}
	return strings.Join(s, "; "), text
}

// writeImages writes a run's outputs as PNG files named by seed (and particle when a run returns
// several per image), each written atomically with its settings in a "parameters" text chunk.
func writeImages(dir string, run runInfo, cfg sampler.Config, res *sampler.Result) ([]writtenImage, error) {
	perGroup := len(res.Outputs) / cfg.Images
	var out []writtenImage
	for i, o := range res.Outputs {
		name := fmt.Sprintf("%d.png", o.Seed)
		if perGroup > 1 {
			name = fmt.Sprintf("%d-%d.png", o.Seed, o.Particle)
		}
		path := filepath.Join(dir, name)
		data, err := encodePNG(res.Images.Image(i), parameters(run, cfg, o))
		if err != nil {
			return out, err
		}
		if err := atomicfile.Write(path, data, 0o644); err != nil {
			return out, err
		}
		w := writtenImage{Path: path, Seed: o.Seed, Particle: o.Particle, LogWeight: o.LogWeight, Roots: o.Roots, Parts: explainParts(o.Parts)}
		if !math.IsNaN(o.Reward) {
			w.Reward = o.Reward
		}
		out = append(out, w)
	}
	return out, nil
}

// encodePNG encodes img with its settings in a "parameters" text chunk.
func encodePNG(img image.Image, params string) ([]byte, error) {
	return encodePNGLevel(img, params, png.BestCompression)
}

// encodeSheet encodes a contact sheet or grid, with the default compression: they are hundreds
// of pixels across, and the best compression would cost more time than sampling the images.
func encodeSheet(img image.Image, params string) ([]byte, error) {
	return encodePNGLevel(img, params, png.DefaultCompression)
}

func encodePNGLevel(img image.Image, params string, level png.CompressionLevel) ([]byte, error) {
	var buf bytes.Buffer
	if err := pngtext.EncodeLevel(&buf, img, []pngtext.Entry{{Key: "parameters", Text: params}}, level); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// runInfo is what besides the sampler configuration describes a run's outputs.
type runInfo struct {
	info pipelines.Info
	// rewardSpec is the reward as the user wrote it; negative the negative prompt; references
	// the reference images of a batch item.
	rewardSpec, negative string
	references           []string
	// start is the image an image-to-image run starts from (nil otherwise).
	start *startImage
}

// parameters formats settings the way other diffusion tools do ("parameters" chunk): the prompt
// on the first line, the negative prompt on the next ("Negative prompt: ..."), then "Key: value"
// pairs: the run's settings, then this output's seed, particle and reward.
func parameters(run runInfo, cfg sampler.Config, o sampler.Output) string {
	var b strings.Builder
	b.WriteString(cfg.Prompt)
	if run.negative != "" {
		b.WriteString("\nNegative prompt: " + run.negative)
	}
	pairs := settingPairs(run, cfg)
	pairs = append(pairs, [2]string{"Seed", fmt.Sprint(o.Seed)})
	if cfg.Method != sampler.Base || run.rewardSpec != "" {
		pairs = append(pairs, [2]string{"Select", string(cfg.Select)}, [2]string{"Particle", fmt.Sprint(o.Particle)})
	}
	if run.rewardSpec != "" {
		pairs = append(pairs, [2]string{"Reward value", fmt.Sprintf("%.6g", o.Reward)})
	}
	if parts := explainParts(o.Parts); parts != nil {
		scores, text := partsString(parts)
		// Quoted, since the chunk separates its pairs with commas.
		pairs = append(pairs, [2]string{"Reward parts", strconv.Quote(scores)})
		if text != "" {
			pairs = append(pairs, [2]string{"OCR text", text})
		}
	}
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

// settingPairs are the settings that decide a run's outputs, whatever the seed: what the
// "parameters" chunk records and what identifies a batch item's settings.
func settingPairs(run runInfo, cfg sampler.Config) [][2]string {
	info := run.info
	pairs := [][2]string{
		{"Steps", fmt.Sprint(cfg.Steps)},
		{"Sampler", string(cfg.Rule)},
		{"Eta", fmt.Sprint(cfg.Eta)},
		{"CFG scale", fmt.Sprint(cfg.Guidance)},
		{"Size", fmt.Sprintf("%dx%d", info.ImageWidth, info.ImageHeight)},
		{"Model", info.Name},
		{"Model hash", info.Hash[:min(len(info.Hash), 10)]},
	}
	pairs = append(pairs, info.Settings...)
	if run.start != nil {
		pairs = append(pairs, [2]string{"Init image", filepath.Base(run.start.path)},
			[2]string{"Init image hash", run.start.hash[:10]}, [2]string{"Denoising strength", fmt.Sprint(run.start.strength)})
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
	if run.rewardSpec != "" {
		pairs = append(pairs, [2]string{"Reward", run.rewardSpec})
	}
	if len(run.references) > 0 {
		pairs = append(pairs, [2]string{"References", strings.Join(run.references, " ")})
	}
	return pairs
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
