package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
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
	b.WriteString(settingsText(run, cfg, o.Seed))
	if cfg.Method != sampler.Base || run.rewardSpec != "" {
		b.WriteString(", Particle: " + fmt.Sprint(o.Particle))
	}
	if run.rewardSpec != "" {
		b.WriteString(", Reward value: " + fmt.Sprintf("%.6g", o.Reward))
	}
	if parts := explainParts(o.Parts); parts != nil {
		scores, text := partsString(parts)
		// Quoted, since the chunk separates its pairs with commas.
		b.WriteString(", Reward parts: " + strconv.Quote(scores))
		if text != "" {
			b.WriteString(", OCR text: " + text)
		}
	}
	return b.String()
}

// settingsText is the start of an output's parameters chunk that the run's settings and the
// output's seed decide: everything before what the run found (the particle it chose, the
// reward). Two images whose chunks start alike were asked for alike.
func settingsText(run runInfo, cfg sampler.Config, seed uint64) string {
	var b strings.Builder
	b.WriteString(cfg.Prompt)
	if run.negative != "" {
		b.WriteString("\nNegative prompt: " + run.negative)
	}
	pairs := settingPairs(run, cfg)
	pairs = append(pairs, [2]string{"Seed", fmt.Sprint(seed)})
	if cfg.Method != sampler.Base || run.rewardSpec != "" {
		pairs = append(pairs, [2]string{"Select", string(cfg.Select)})
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

// checkEarlierOutputs refuses, unless overwrite, to run where a file this run would write (named
// by seed: <seed>.png, <seed>-<particle>.png, <seed>.sheet.png, grid-<first>-<last>.png) holds
// an image that an earlier run asked for differently, by its parameters chunk, or one without
// that chunk, which fksteer did not write. Outputs are named by seed, so without this a second
// run with other settings would silently replace the first one's images. Rewriting an image of
// the same settings loses nothing and is allowed.
func checkEarlierOutputs(dir string, run runInfo, cfg sampler.Config, total int, sheets, overwrite bool) error {
	if overwrite {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read output folder: %w", err)
	}
	last := cfg.Seed + uint64(total) - 1
	grid := fmt.Sprintf("grid-%d-%d.png", cfg.Seed, last)
	for _, e := range entries {
		name := e.Name()
		seed, ok := outputSeed(name, cfg.Particles, sheets)
		switch {
		case sheets && total > 1 && name == grid:
			seed = cfg.Seed
		case !ok || seed-cfg.Seed >= uint64(total): // seed-first wraps around below first
			continue
		}
		path := filepath.Join(dir, name)
		recorded, err := pngParameters(path)
		want := pngtext.Clean(settingsText(run, cfg, seed)) // as the chunk stores it
		if err == nil && (recorded == want || strings.HasPrefix(recorded, want+", ")) {
			continue
		}
		why := "it has no parameters chunk, so fksteer did not write it"
		if err == nil {
			why = "an earlier run made it with other settings (" + firstDifference(recorded, want) + ")"
		}
		return usageError{fmt.Errorf("%s would be replaced, but %s: use another --out, or pass --overwrite to replace it", path, why)}
	}
	return nil
}

// outputSeed reads the seed from the name of a file generate writes: <seed>.png,
// <seed>-<particle>.png with particle < particles, and <seed>.sheet.png when sheets are drawn.
func outputSeed(name string, particles int, sheets bool) (uint64, bool) {
	base, ok := strings.CutSuffix(name, ".png")
	if !ok {
		return 0, false
	}
	if b, isSheet := strings.CutSuffix(base, ".sheet"); isSheet {
		if !sheets {
			return 0, false
		}
		base = b
	} else if s, p, found := strings.Cut(base, "-"); found {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n >= particles || strconv.Itoa(n) != p {
			return 0, false
		}
		base = s
	}
	seed, err := strconv.ParseUint(base, 10, 64)
	if err != nil || strconv.FormatUint(seed, 10) != base {
		return 0, false
	}
	return seed, true
}

// pngParameters returns the parameters chunk of the PNG file at path.
func pngParameters(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	entries, err := pngtext.Read(bufio.NewReader(f))
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.Key == "parameters" {
			return e.Text, nil
		}
	}
	return "", errors.New("no parameters chunk")
}

// firstDifference names the first line or "Key: value" pair where a recorded parameters chunk
// and the wanted one differ, for a message.
func firstDifference(recorded, want string) string {
	r, w := strings.Split(recorded, "\n"), strings.Split(want, "\n")
	if r[0] != w[0] {
		return fmt.Sprintf("prompt %q, now %q", logLine(r[0]), logLine(w[0]))
	}
	rs, ws := strings.Split(r[len(r)-1], ", "), strings.Split(w[len(w)-1], ", ")
	for i, p := range ws {
		if i >= len(rs) || rs[i] != p {
			was := "nothing"
			if i < len(rs) {
				was = logLine(rs[i])
			}
			return fmt.Sprintf("%s, now %s", was, logLine(p))
		}
	}
	return "negative prompt"
}

// logLine cuts s to a length one message line can show.
func logLine(s string) string {
	if r := []rune(s); len(r) > 80 {
		return string(r[:80]) + "…"
	}
	return s
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
