package generation

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/generation/sheet"
	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/potentials"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
)

// Result is what sampling some of a run's images gave: the sampler's result (images, outputs,
// statistics, trajectories when recorded) with the run and the chunk's configuration, so that
// its outputs can be encoded with their settings.
type Result struct {
	*sampler.Result
	Run *Run
	// Config is the chunk's configuration (its Seed is its first image's).
	Config sampler.Config

	sheets *sheet.Recorder
}

// Written is one image file a run wrote.
type Written struct {
	Path      string  `json:"path"`
	Seed      uint64  `json:"seed"`
	Particle  int     `json:"particle"`
	Reward    float64 `json:"reward,omitempty"`
	LogWeight float64 `json:"log_weight,omitempty"`
	Roots     int     `json:"distinct_roots,omitempty"`
	// Parts breaks the reward down for composites and text-reading rewards.
	Parts []Part `json:"reward_parts,omitempty"`
}

// Part is one part of a reward; Text is set only for parts that read text, and is "" when they
// read nothing.
type Part struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
	Score  Score   `json:"score"`
	Text   *string `json:"text,omitempty"`
}

// Score is a reward in JSON output: NaN and ±Inf, which JSON cannot hold (a reward that could
// not score an image), are written as null and read back as NaN.
type Score float64

// MarshalJSON writes a finite score as a number and any other as null.
func (s Score) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(s))
}

// UnmarshalJSON reads null as NaN.
func (s *Score) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*s = Score(math.NaN())
		return nil
	}
	return json.Unmarshal(data, (*float64)(s))
}

// Parts reports a breakdown only where it says more than the total: several parts, or text
// that was read.
func Parts(parts []rewards.PartScore) []Part {
	if len(parts) < 2 && !(len(parts) == 1 && parts[0].HasText) {
		return nil
	}
	return PartsOf(parts)
}

// PartsOf converts every part of a score, for output.
func PartsOf(parts []rewards.PartScore) []Part {
	if parts == nil {
		return nil
	}
	out := make([]Part, len(parts))
	for i, p := range parts {
		out[i] = Part{Name: p.Name, Weight: p.Weight, Score: Score(p.Score)}
		if p.HasText {
			text := p.Text
			out[i].Text = &text
		}
	}
	return out
}

// PartsString formats a breakdown as "0.7*preference=0.912; 0.3*ocr=0.75", and the text read
// as a quoted string with lines joined by " / ".
func PartsString(parts []Part) (scores, text string) {
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

// PNG encodes output i with its settings in a "parameters" text chunk.
func (r *Result) PNG(i int) ([]byte, error) {
	return encodePNG(r.Images.Image(i), r.Run.Parameters(r.Config, r.Outputs[i]), png.BestCompression)
}

// WriteImages writes the outputs into dir as PNG files named by seed (and particle when a run
// returns several per image), each written atomically.
func (r *Result) WriteImages(dir string) ([]Written, error) {
	perGroup := len(r.Outputs) / r.Config.Images
	var out []Written
	for i, o := range r.Outputs {
		name := fmt.Sprintf("%d.png", o.Seed)
		if perGroup > 1 {
			name = fmt.Sprintf("%d-%d.png", o.Seed, o.Particle)
		}
		path := filepath.Join(dir, name)
		data, err := r.PNG(i)
		if err != nil {
			return out, err
		}
		if err := atomicfile.Write(path, data, 0o644); err != nil {
			return out, err
		}
		w := Written{Path: path, Seed: o.Seed, Particle: o.Particle, LogWeight: o.LogWeight, Roots: o.Roots, Parts: Parts(o.Parts)}
		if !math.IsNaN(o.Reward) {
			w.Reward = o.Reward
		}
		out = append(out, w)
	}
	return out, nil
}

// SheetPNG draws group g's contact sheet (Spec.ContactSheet), with the group's settings in its
// parameters chunk.
func (r *Result) SheetPNG(g int) ([]byte, error) {
	if r.sheets == nil {
		return nil, errors.New("no contact sheets: the spec did not ask for them (contact-sheet)")
	}
	cfg := r.Config
	seed := cfg.Seed + uint64(g)
	title := fmt.Sprintf("%s | %s, K=%d, seed %d", cfg.Prompt, cfg.Method, cfg.Particles, seed)
	return encodePNG(r.sheets.Genealogy(g, r.Result, title), r.Run.Parameters(cfg, sampler.Output{Group: g, Seed: seed, Reward: math.NaN()}), png.DefaultCompression)
}

// WriteSheets writes each group's contact sheet as <seed>.sheet.png.
func (r *Result) WriteSheets(dir string) error {
	for g := range r.Config.Images {
		data, err := r.SheetPNG(g)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(dir, fmt.Sprintf("%d.sheet.png", r.Config.Seed+uint64(g))), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// GridCells are the outputs as grid cells captioned with their position (from first) and
// reward (seeds are too long for a caption; each image's file records its own).
func (r *Result) GridCells(first int) []sheet.Cell {
	var cells []sheet.Cell
	for i, o := range r.Outputs {
		caption := fmt.Sprintf("#%d", first+i)
		if !math.IsNaN(o.Reward) {
			caption += fmt.Sprintf(" r=%.3g", o.Reward)
		}
		cells = append(cells, sheet.Cell{Image: r.Images.Image(i), Caption: caption})
	}
	return cells
}

// GridPNG draws cells (the final images of the run) as one grid image.
func (r *Run) GridPNG(cells []sheet.Cell) ([]byte, error) {
	cfg := r.Config
	cols := int(math.Ceil(math.Sqrt(float64(len(cells)))))
	title := fmt.Sprintf("%s | %s, K=%d", cfg.Prompt, cfg.Method, cfg.Particles)
	return encodePNG(sheet.Grid(title, cells, cols), r.Parameters(cfg, sampler.Output{Seed: cfg.Seed, Reward: math.NaN()}), png.DefaultCompression)
}

// GridName is the file name of the grid of all the run's images.
func (r *Run) GridName() string {
	return fmt.Sprintf("grid-%d-%d.png", r.Config.Seed, r.Config.Seed+uint64(r.Config.Images)-1)
}

// encodePNG encodes img with params in a "parameters" text chunk. Contact sheets and grids use
// the default compression: they are hundreds of pixels across, and the best compression would
// cost more time than sampling the images.
func encodePNG(img image.Image, params string, level png.CompressionLevel) ([]byte, error) {
	var buf bytes.Buffer
	if err := pngtext.EncodeLevel(&buf, img, []pngtext.Entry{{Key: "parameters", Text: params}}, level); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Parameters formats an output's settings the way other diffusion tools do ("parameters"
// chunk): the prompt on the first line, the negative prompt on the next ("Negative prompt:
// ..."), then "Key: value" pairs: the run's settings, then the output's seed, particle and
// reward. cfg is the configuration of the chunk o came from. ParseParameters reads it back.
func (r *Run) Parameters(cfg sampler.Config, o sampler.Output) string {
	var b strings.Builder
	b.WriteString(r.SettingsText(cfg, o.Seed))
	if cfg.Method != sampler.Base || r.Spec.Reward != "" {
		b.WriteString(", Particle: " + fmt.Sprint(o.Particle))
	}
	if r.Spec.Reward != "" {
		b.WriteString(", Reward value: " + fmt.Sprintf("%.6g", o.Reward))
	}
	if parts := Parts(o.Parts); parts != nil {
		scores, text := PartsString(parts)
		// Quoted, since the chunk separates its pairs with commas.
		b.WriteString(", Reward parts: " + strconv.Quote(scores))
		if text != "" {
			b.WriteString(", OCR text: " + text)
		}
	}
	return b.String()
}

// SettingsText is the start of an output's parameters chunk that the run's settings and the
// output's seed decide: everything before what the run found (the particle it chose, the
// reward). Two images whose chunks start alike were asked for alike.
func (r *Run) SettingsText(cfg sampler.Config, seed uint64) string {
	var b strings.Builder
	b.WriteString(cfg.Prompt)
	if r.Spec.NegativePrompt != "" {
		b.WriteString("\nNegative prompt: " + r.Spec.NegativePrompt)
	}
	pairs := r.settingPairs(cfg)
	pairs = append(pairs, [2]string{"Seed", fmt.Sprint(seed)})
	if cfg.Method != sampler.Base || r.Spec.Reward != "" {
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

// settingPairs are the settings that decide a run's outputs, whatever the seed: what the
// "parameters" chunk records and what identifies a batch item's settings.
func (r *Run) settingPairs(cfg sampler.Config) [][2]string {
	info := r.Model.Info()
	pairs := [][2]string{
		{keySteps, fmt.Sprint(cfg.Steps)},
		{keySampler, string(cfg.Rule)},
		{keyEta, fmt.Sprint(cfg.Eta)},
		{keyGuidance, fmt.Sprint(cfg.Guidance)},
		{keySize, fmt.Sprintf("%dx%d", info.ImageWidth, info.ImageHeight)},
		{keyModel, info.Name},
		{keyModelHash, info.Hash[:min(len(info.Hash), 10)]},
	}
	pairs = append(pairs, info.Settings...)
	if s := r.Spec; s.InitImage != "" {
		pairs = append(pairs, [2]string{keyInit, filepath.Base(s.InitImage)},
			[2]string{keyInitHash, r.initHash[:10]}, [2]string{keyStrength, fmt.Sprint(s.Strength)})
	}
	if cfg.CondOpts.Class != nil {
		pairs = append(pairs, [2]string{keyClass, fmt.Sprint(*cfg.CondOpts.Class)})
	}
	pairs = append(pairs, [2]string{keyMethod, string(cfg.Method)}, [2]string{keyParticles, fmt.Sprint(cfg.Particles)})
	if cfg.Method == sampler.FK {
		pairs = append(pairs,
			[2]string{keyPotential, string(cfg.Potential)},
			[2]string{keyLambda, lambdaString(cfg.Lambda)},
			[2]string{keyResampling, resamplingString(cfg.Resampling)},
			[2]string{keyResampler, string(cfg.Resampler)},
		)
	}
	if cfg.Method == sampler.DTS || cfg.Method == sampler.DTSStar {
		pairs = append(pairs, [2]string{keyLambda, lambdaString(cfg.Lambda)})
	}
	if cfg.Search.Budget > 0 {
		pairs = append(pairs, [2]string{keyBudget, fmt.Sprint(cfg.Search.Budget)})
	}
	if s := searchString(cfg); s != "" {
		pairs = append(pairs, [2]string{keySearch, s})
	}
	if r.Spec.Reward != "" {
		pairs = append(pairs, [2]string{keyReward, r.Spec.Reward})
	}
	if len(r.Spec.References) > 0 {
		pairs = append(pairs, [2]string{keyReferences, strings.Join(r.Spec.References, " ")})
	}
	return pairs
}

// searchString formats the search settings cfg's method uses, as resolved (parseSearch reads
// them back).
func searchString(cfg sampler.Config) string {
	s := cfg.Search
	var pairs []string
	add := func(k string, v any) { pairs = append(pairs, fmt.Sprintf("%s=%v", k, v)) }
	switch cfg.Method {
	case sampler.SVDD:
		add("candidates", s.Candidates)
		add("alpha", s.Alpha)
	case sampler.Beam:
		add("candidates", s.Candidates)
		add("beam-every", s.Every)
	case sampler.Noise:
		add("neighbours", s.Neighbours)
		add("rounds", s.Rounds)
		add("noise-scale", s.Scale)
	case sampler.Random:
		add("neighbours", s.Neighbours)
	case sampler.DTS, sampler.DTSStar:
		if s.Budget == 0 {
			add("iterations", s.Iterations)
		}
		add("widening", s.Widening)
		if cfg.Method == sampler.DTSStar {
			add("exploration", s.Exploration)
		}
	}
	return strings.Join(pairs, " ")
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

// CheckEarlierOutputs refuses, unless overwrite, to run where a file this run would write into
// dir (named by seed: <seed>.png, <seed>-<particle>.png, <seed>.sheet.png,
// grid-<first>-<last>.png) holds an image that an earlier run asked for differently, by its
// parameters chunk, or one without that chunk, which fksteer did not write. Outputs are named
// by seed, so without this a second run with other settings would silently replace the first
// one's images. Rewriting an image of the same settings loses nothing and is allowed.
func (r *Run) CheckEarlierOutputs(dir string, overwrite bool) error {
	if overwrite {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read output folder: %w", err)
	}
	cfg, sheets, total := r.Config, r.Spec.ContactSheet, r.Config.Images
	grid := r.GridName()
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
		why := "it has no parameters chunk, so fksteer did not write it"
		if recorded, err := PNGParameters(path); err == nil {
			diff := r.Differs(recorded, seed)
			if diff == "" {
				continue
			}
			why = "an earlier run made it with other settings (" + diff + ")"
		}
		return &SpecError{fmt.Errorf("%s would be replaced, but %s: use another --out, or pass --overwrite to replace it", path, why)}
	}
	return nil
}

// Differs compares the parameters chunk an image records with what this run would record for
// the image of seed: "" when the image was asked for alike (the same settings text; what the
// run found, its particle and reward, may follow), else the first difference, for a message.
func (r *Run) Differs(recorded string, seed uint64) string {
	want := pngtext.Clean(r.SettingsText(r.Config, seed)) // as the chunk stores it
	if recorded == want || strings.HasPrefix(recorded, want+", ") {
		return ""
	}
	return FirstDifference(recorded, want)
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

// PNGParameters returns the parameters chunk of the PNG file at path.
func PNGParameters(path string) (string, error) {
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

// FirstDifference names the first line or "Key: value" pair where a recorded parameters chunk
// and the wanted one differ, for a message.
func FirstDifference(recorded, want string) string {
	r, w := strings.Split(recorded, "\n"), strings.Split(want, "\n")
	if r[0] != w[0] {
		return fmt.Sprintf("prompt %q, now %q", clip(r[0]), clip(w[0]))
	}
	rs, ws := strings.Split(r[len(r)-1], ", "), strings.Split(w[len(w)-1], ", ")
	for i, p := range ws {
		if i >= len(rs) || rs[i] != p {
			was := "nothing"
			if i < len(rs) {
				was = clip(rs[i])
			}
			return fmt.Sprintf("%s, now %s", was, clip(p))
		}
	}
	return "negative prompt"
}

// clip cuts s to a length one message line can show.
func clip(s string) string {
	if r := []rune(s); len(r) > 80 {
		return string(r[:80]) + "…"
	}
	return s
}
