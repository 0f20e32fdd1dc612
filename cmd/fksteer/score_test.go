package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/internal/testimages"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/rewards"
)

// writePNG writes img to dir/name and returns the path.
func writePNG(t *testing.T, dir, name string, img image.Image) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	return p
}

func solid(w, h int, c color.Color) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(c), image.Point{}, draw.Src)
	return img
}

// scoreLines runs `fksteer score` and decodes its JSON lines.
func scoreLines(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	code, stdout, stderr := cli(t, "", append([]string{"score"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestScoreColorAndComposite scores solid images of two sizes with the colour reward and with a
// composite: every image gets a line, in argument order, with each part's score.
func TestScoreColorAndComposite(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	red := writePNG(t, dir, "red.png", solid(4, 4, color.RGBA{255, 0, 0, 255}))
	blue := writePNG(t, dir, "blue.png", solid(6, 2, color.RGBA{0, 0, 255, 255}))
	red2 := writePNG(t, dir, "red2.png", solid(4, 4, color.RGBA{255, 0, 0, 255}))

	lines := scoreLines(t, "--reward", "color:target=#ff0000", red, blue, red2)
	// Red against red: 1. Blue against red: distance sqrt(2), score 1 - sqrt(2)/sqrt(3).
	want := []float64{1, 1 - math.Sqrt(2)/math.Sqrt(3), 1}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	for i, l := range lines {
		if l["image"] != []string{red, blue, red2}[i] || math.Abs(l["score"].(float64)-want[i]) > 1e-6 {
			t.Errorf("line %d: %v, want score %g", i, l, want[i])
		}
		parts := l["parts"].([]any)
		if p := parts[0].(map[string]any); len(parts) != 1 || p["name"] != "color" || p["weight"] != 1.0 {
			t.Errorf("line %d: parts %v", i, parts)
		}
		if _, ok := parts[0].(map[string]any)["text"]; ok {
			t.Errorf("line %d: a colour reward reports text", i)
		}
	}

	lines = scoreLines(t, "--reward", "0.25*color:target=#ff0000+0.75*color:target=#0000ff", red, blue)
	for i, l := range lines {
		parts := l["parts"].([]any)
		if len(parts) != 2 {
			t.Fatalf("line %d: parts %v", i, parts)
		}
		var sum float64
		for j, p := range parts {
			pm := p.(map[string]any)
			if pm["name"] != []string{"color", "color#2"}[j] || pm["weight"] != []float64{0.25, 0.75}[j] {
				t.Errorf("line %d part %d: %v", i, j, pm)
			}
			sum += pm["weight"].(float64) * pm["score"].(float64)
		}
		if math.Abs(sum-l["score"].(float64)) > 1e-9 {
			t.Errorf("line %d: score %v is not the weighted sum %g of its parts", i, l["score"], sum)
		}
	}

	// The same composite from the config file's reward key.
	cfg := filepath.Join(dir, "fksteer.yaml")
	if err := os.WriteFile(cfg, []byte("reward: 0.25*color:target=#ff0000+0.75*color:target=#0000ff\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fromFile := scoreLines(t, "--config", cfg, red, blue)
	for i := range lines {
		if fromFile[i]["score"] != lines[i]["score"] || len(fromFile[i]["parts"].([]any)) != 2 {
			t.Errorf("line %d from the config file: %v, want %v", i, fromFile[i], lines[i])
		}
	}
}

// TestScoreOCRPrintsText reads a rendered word with the real PaddleOCR models and prints the
// text read and the reward against the prompt's quoted text.
func TestScoreOCRPrintsText(t *testing.T) {
	modeltest.Runtime(t)
	det := testenv.SharedFile(t, "models/ppocr-en/en_PP-OCRv3_det_infer.onnx")
	models := filepath.Dir(det)
	f, err := opentype.Parse(goregular.TTF)
	if err != nil {
		t.Fatal(err)
	}
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: 40, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		t.Fatal(err)
	}
	img := solid(320, 96, color.White).(*image.RGBA)
	d := font.Drawer{Dst: img, Src: image.NewUniform(color.Black), Face: face, Dot: fixed.P(24, 62)}
	d.DrawString("Sesame")
	path := writePNG(t, t.TempDir(), "word.png", img)
	spec := "ocr:det=" + det + ",rec=" + filepath.Join(models, "en_number_mobile_v2.0_rec_infer.onnx") + ",dict=" + filepath.Join(models, "en_dict.txt")
	lines := scoreLines(t, "--reward", spec, "--prompt", `a door that says "Open Sesame"`, path)
	part := lines[0]["parts"].([]any)[0].(map[string]any)
	// "sesame" lacks the 4 letters of "open" in "opensesame": 1 - 4/10.
	if part["text"] != "Sesame" || math.Abs(lines[0]["score"].(float64)-0.6) > 1e-9 {
		t.Errorf("line %v: want text Sesame and score 0.6", lines[0])
	}
}

func TestScoreUsageErrors(t *testing.T) {
	dir := t.TempDir()
	img := writePNG(t, dir, "a.png", solid(2, 2, color.Black))
	code, _, stderr := cli(t, "", "score", "--reward", "color:target=#000000")
	wantError(t, code, stderr, exitUsage, "image")
	code, _, stderr = cli(t, "", "score", img)
	wantError(t, code, stderr, exitUsage, "--reward")
	// A bad spec is bad usage (README: exit 2): rerunning the same command cannot help.
	code, _, stderr = cli(t, "", "score", "--reward", "colour:target=#000000", img)
	wantError(t, code, stderr, exitUsage, `did you mean "color"`)
	code, _, stderr = cli(t, "", "score", "--reward", "color:target=#000000", "--progress", "fancy", img)
	wantError(t, code, stderr, exitUsage, `progress "fancy"`)
	code, _, stderr = cli(t, "", "score", "--reward", "color:target=#000000", "--max-image-pixels", "-1", img)
	wantError(t, code, stderr, exitUsage, "max-image-pixels -1")
	code, _, stderr = cli(t, "", "score", "--reward", "color:target=#000000", filepath.Join(dir, "missing.png"))
	wantError(t, code, stderr, exitError, "missing.png")
}

// hookWriter is a stdout that runs hook once, at its first write.
type hookWriter struct {
	bytes.Buffer
	hook func()
}

func (w *hookWriter) Write(p []byte) (int, error) {
	if w.hook != nil {
		w.hook()
		w.hook = nil
	}
	return w.Buffer.Write(p)
}

// TestScoreStreams: score prints the first batch before it reads the files after it, so memory
// does not grow with the number of files. The 17th file does not exist until the first line is
// written; scoring all 17 therefore proves that the first 16 were printed before the 17th was
// opened. (Before, score decoded every file first and failed on the missing one, printing
// nothing.)
func TestScoreStreams(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range rewards.FileBatchImages {
		paths = append(paths, writePNG(t, dir, fmt.Sprintf("%02d.png", i), solid(3, 3, color.Gray{uint8(i * 16)})))
	}
	late := filepath.Join(dir, "late.png")
	paths = append(paths, late)
	stdout := &hookWriter{hook: func() { writePNG(t, dir, "late.png", solid(3, 3, color.White)) }}
	var stderr bytes.Buffer
	code := run(context.Background(), append([]string{"score", "--provider", "cpu", "--reward", "color:target=#ffffff"}, paths...), stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != len(paths) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(paths), stdout.String())
	}
	for i, l := range lines {
		var got scoredImage
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		// Grey g against white: 1 - sqrt(3)(1-g)/sqrt(3) = g.
		want := float64(i*16) / 255
		if i == rewards.FileBatchImages {
			want = 1
		}
		if got.Image != paths[i] || math.Abs(float64(got.Score)-want) > 1e-6 {
			t.Errorf("line %d: %s; want %s with score %g", i, l, paths[i], want)
		}
	}
}

// TestScoreReportsBadFilesAndScoresTheRest: a missing file, a text file, a truncated PNG and an
// image bomb (a 20000x20000 header in under 100 bytes) are each reported on one stderr warning
// line naming the file, every other image is scored and printed in argument order, and the exit
// code is 1 with one "fksteer:" line, the last, that counts the failures. (Before, the first bad file stopped
// score with nothing printed, and the bomb decoded to 1.6 GB.)
func TestScoreReportsBadFilesAndScoresTheRest(t *testing.T) {
	dir := t.TempDir()
	white := writePNG(t, dir, "white.png", solid(4, 4, color.White))
	black := writePNG(t, dir, "black.png", solid(2, 6, color.Black))
	text := filepath.Join(dir, "notes.png")
	bomb := filepath.Join(dir, "bomb.png")
	truncated := filepath.Join(dir, "truncated.png")
	var full bytes.Buffer
	png.Encode(&full, solid(8, 8, color.White))
	for path, data := range map[string][]byte{
		text:      []byte("not an image\n"),
		bomb:      testimages.PNGBomb(20000, 20000),
		truncated: full.Bytes()[:full.Len()/2],
	} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.png")
	code, stdout, stderr := cli(t, "", "score", "--provider", "cpu", "--reward", "color:target=#ffffff",
		white, text, bomb, black, truncated, missing)
	wantError(t, code, stderr, exitError, "4 of 6 images were not scored", "the scores of the other 2 are printed")
	if n := strings.Count("\n"+stderr, "\nfksteer: "); n != 1 {
		t.Errorf("stderr has %d \"fksteer: \" lines, want the summary alone:\n%s", n, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"image":"`+white+`","score":1,`) || !strings.Contains(lines[1], `"image":"`+black+`","score":0,`) {
		t.Errorf("stdout:\n%s\nwant white.png (1) then black.png (0)", stdout)
	}
	var notScored []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, `level=WARN msg="image not scored"`) {
			notScored = append(notScored, l)
		}
	}
	wants := [][]string{
		{text, "unknown format"},
		{bomb, "20000x20000 = 400 megapixels is over the limit of 50 megapixels", "--max-image-pixels 400000000"},
		{truncated},
		{missing, "no such file"},
	}
	if len(notScored) != len(wants) {
		t.Fatalf("stderr has %d 'image not scored' warnings, want %d:\n%s", len(notScored), len(wants), stderr)
	}
	for i, w := range wants {
		for _, s := range w {
			if !strings.Contains(notScored[i], s) {
				t.Errorf("stderr line %q does not mention %q", notScored[i], s)
			}
		}
	}

	// --max-image-pixels moves the limit: the 2x6 image passes 12 pixels, the 4x4 one does not.
	code, stdout, stderr = cli(t, "", "score", "--provider", "cpu", "--reward", "color:target=#ffffff", "--max-image-pixels", "12", white, black)
	wantError(t, code, stderr, exitError, "1 of 2 images were not scored", "white.png: 4x4 = 16 pixels is over the limit of 12 pixels")
	if !strings.Contains(stdout, `"image":"`+black+`","score":0,`) {
		t.Errorf("stdout %q; want black.png's line", stdout)
	}
}

// TestScoreProgress: score shows its progress as batch does: a bar (on a terminal, or with
// --progress bar) counting images, log lines with --progress log, nothing with --progress off
// or, as for generate, with auto off a terminal. Before, score had no --progress and showed
// nothing.
func TestScoreProgress(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range 3 {
		paths = append(paths, writePNG(t, dir, fmt.Sprintf("%d.png", i), solid(2, 2, color.White)))
	}
	args := func(mode string) []string {
		return append([]string{"score", "--provider", "cpu", "--reward", "color:target=#ffffff", "--progress", mode}, paths...)
	}
	code, stdout, stderr := cli(t, "", args("bar")...)
	if code != exitOK || !strings.Contains(stderr, "score 100%") || !strings.Contains(stderr, "(3/3") {
		t.Errorf("--progress bar: exit %d, stderr %q; want a full bar counting 3/3", code, stderr)
	}
	if n := strings.Count(stdout, "\n"); n != 3 || strings.Contains(stdout, "100%") {
		t.Errorf("--progress bar: stdout %q; want 3 JSON lines and no bar", stdout)
	}
	code, _, stderr = cli(t, "", args("log")...)
	if code != exitOK || !strings.Contains(stderr, "msg=progress scored=3/3") {
		t.Errorf("--progress log: exit %d, stderr %q; want a log line with scored=3/3", code, stderr)
	}
	for _, mode := range []string{"off", "auto"} {
		code, _, stderr = cli(t, "", args(mode)...)
		if code != exitOK || strings.Contains(stderr, "progress") || strings.Contains(stderr, "3/3") {
			t.Errorf("--progress %s (stderr is not a terminal): exit %d, stderr %q; want no progress", mode, code, stderr)
		}
	}
}

// TestScoreRewardErrorsPerSize: a reward that cannot score images of one size (a classifier
// whose crop is larger than them) fails those images only, each named once with the reward's
// message, and the images of another size are scored.
func TestScoreRewardErrorsPerSize(t *testing.T) {
	modeltest.Runtime(t)
	model := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	dir := t.TempDir()
	small := writePNG(t, dir, "small.png", solid(20, 20, color.Black))
	big := writePNG(t, dir, "big.png", solid(40, 40, color.Black))
	code, stdout, stderr := cli(t, "", "score", "--provider", "cpu", "--reward", "classifier:model="+model+",target=3,crop=28", small, big)
	wantError(t, code, stderr, exitError, "1 of 2 images were not scored", "small.png: reward classifier: crop=28 is larger than the 20x20 images: crop must be 1 to 20 (0: no crop)")
	if strings.Contains(stderr, "reward classifier: reward classifier") {
		t.Errorf("doubled prefix:\n%s", stderr)
	}
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 1 || !strings.Contains(lines[0], `"image":"`+big+`"`) {
		t.Errorf("stdout %q; want big.png's line alone", stdout)
	}
}
