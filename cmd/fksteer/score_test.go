package main

import (
	"encoding/json"
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
	testenv.Runtime(t)
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
	testenv.Runtime(t)
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
	code, _, stderr = cli(t, "", "score", "--reward", "colour:target=#000000", img)
	wantError(t, code, stderr, exitError, `did you mean "color"`)
	code, _, stderr = cli(t, "", "score", "--reward", "color:target=#000000", filepath.Join(dir, "missing.png"))
	wantError(t, code, stderr, exitError, "missing.png")
}
