package rewards_test

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agnivade/levenshtein"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goitalic"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

func TestQuotedText(t *testing.T) {
	for _, tc := range []struct {
		prompt, want string
		ok           bool
	}{
		{`a neon sign that says "Open Sesame" at night`, "Open Sesame", true},
		{`"first" and "second"`, "first", true},
		{`"" empty`, "", true},
		{`a sign with no quotes`, "", false},
		{`an unclosed "quote`, "", false},
	} {
		got, ok := rewards.QuotedText(tc.prompt)
		if got != tc.want || ok != tc.ok {
			t.Errorf("QuotedText(%q) = %q, %v; want %q, %v", tc.prompt, got, ok, tc.want, tc.ok)
		}
	}
}

// TestOCRRewardFormula checks Flow-GRPO's formula on hand-made pairs; each expectation is worked
// out by hand: normalise (lowercase, drop spaces), distance 0 for a substring, else Levenshtein
// capped at the target's length, reward 1 - distance/length.
func TestOCRRewardFormula(t *testing.T) {
	for _, tc := range []struct {
		read, target string
		want         float64
	}{
		{"Hello World", "hello world", 1},         // same after normalising
		{"the sign says HELLO there", "Hello", 1}, // substring
		{"h e l l o", "hello", 1},                 // spaces do not count
		{"helo", "hello", 1 - 1.0/5},              // one deletion
		{"jello", "hello", 1 - 1.0/5},             // one substitution
		{"", "abc", 0},                            // nothing read: distance 3 = length
		{"xyzxyzxyzxyz", "ab", 0},                 // distance 12, capped at 2
		{"cafe", "café", 1 - 1.0/4},               // counted in characters, not bytes
		{"OPENSESAME", "Open Sesame", 1},          // case and spaces
		{"open sesam", "Open Sesame", 1 - 1.0/10}, // 10 characters without the space
		{"kitten", "sitting", 1 - 3.0/7},          // the textbook distance 3
		{"abcdef", "abcxef", 1 - 1.0/6},           // one substitution inside
		{"ab", "abcd", 1 - 2.0/4},                 // two missing characters
		{"STOP STOP", "stop", 1},                  // repeated substring
		{"sto p", "stop", 1},                      // space inside the read text
	} {
		if got := rewards.OCRReward(tc.read, tc.target); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("OCRReward(%q, %q) = %g, want %g", tc.read, tc.target, got, tc.want)
		}
	}
	if got := rewards.OCRReward("anything", " "); !math.IsNaN(got) {
		t.Errorf("an empty target should give NaN, got %g", got)
	}
}

// TestLevenshtein checks the distance on pairs worked out by hand (the textbook ones among them),
// then against an independent implementation on random strings with multi-byte runes.
func TestLevenshtein(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3}, // three insertions
		{"abc", "", 3}, // three deletions
		{"abc", "abc", 0},
		{"kitten", "sitting", 3},      // k->s, e->i, insert g
		{"sitting", "kitten", 3},      // symmetric
		{"flaw", "lawn", 2},           // delete f, insert n
		{"saturday", "sunday", 3},     // delete a, t; r->n
		{"intention", "execution", 5}, // Jurafsky and Martin's example, unit substitution cost
		{"ab", "ba", 2},               // a transposition is two edits, not one
		{"ü", "u", 1},                 // one rune, though two bytes
		{"café", "cafe", 1},
		{"日本語", "日本", 1},
		{"日本語", "本語日", 2},   // delete the first rune, insert it at the end
		{"e\u0301", "é", 2}, // no normalisation: e + combining acute is two runes
	} {
		if got := rewards.Levenshtein(tc.a, tc.b); got != tc.want {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("ab cé日")
	word := func() string {
		r := make([]rune, rng.IntN(12))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(r)
	}
	for range 2000 {
		a, b := word(), word()
		if got, want := rewards.Levenshtein(a, b), levenshtein.ComputeDistance(a, b); got != want {
			t.Fatalf("Levenshtein(%q, %q) = %d, github.com/agnivade/levenshtein says %d", a, b, got, want)
		}
	}
}

func ExampleLevenshtein() {
	fmt.Println(rewards.Levenshtein("kitten", "sitting"))
	fmt.Println(rewards.OCRReward("kitten", "sitting")) // 1 - 3/7
	// Output:
	// 3
	// 0.5714285714285714
}

// newOCR builds the OCR reward on the real PaddleOCR models, or skips.
func newOCR(t testing.TB, noDetect bool) *rewards.OCR {
	t.Helper()
	modeltest.Runtime(t)
	dir := filepath.Dir(filepath.Dir(testenv.SharedFile(t, "models/"+rewards.DefaultOCRDetector)))
	testenv.SharedFile(t, "models/"+rewards.DefaultOCRRecognizer)
	o := rewards.DefaultOCROptions(dir)
	o.NoDetect = noDetect
	r, err := rewards.NewOCR(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func loadShared(t *testing.T, rel string) pixels.Images {
	t.Helper()
	img, err := rewards.LoadImage(testenv.SharedFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestOCRReadsTextLine: the recogniser alone reads the cropped line en_rec.jpg exactly as
// ../shared/models/README.md states.
func TestOCRReadsTextLine(t *testing.T) {
	r := newOCR(t, true)
	lines, err := r.Read(context.Background(), loadShared(t, "models/ppocr-en/en_rec.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "To facilitate the shot typeanalysis in videos, we collect MovieShots, a large-scale"
	if len(lines[0]) != 1 || lines[0][0].Text != want {
		t.Fatalf("read %+v, want one line %q", lines[0], want)
	}
	t.Logf("en_rec.jpg: %q (mean character probability %.3f)", lines[0][0].Text, lines[0][0].Score)
}

// enLines is the true text of en.jpg's four lines (read off the image; the second line is also
// what the recogniser reads from en_rec.jpg, the same line cut out by hand).
var enLines = []string{
	"3 MovieShots Dataset",
	"To facilitate the shot type analysis in videos, we collect MovieShots, a large-scale",
	"shot type annotation set that contains 46K shots from 7858 movies. The details",
	"of this dataset are specified as follows.",
}

// paddleLine is a line as PaddleOCR's TextSystem returns it.
type paddleLine struct {
	box   [4][2]float64
	text  string
	score float64
}

// The lines PaddleOCR reads in the two real images with these models. They were made by an
// independent reference: PaddleOCR's own pre- and post-processing (DetResizeForTest,
// NormalizeImage, DBPostProcess, filter_tag_det_res, sorted_boxes, get_rotate_crop_image,
// resize_norm_img in batches of 6) written out in Python with OpenCV 4.6, pyclipper and
// shapely, around the same two ONNX models. fksteer's recogniser inputs equal that
// reference's bit for bit.
//
// The reference reads "MouteShots" (en_rec.jpg) and "MouieShots" (en.jpg) where the recogniser
// alone reads "MovieShots" in en_rec.jpg, and drops the commas after "videos" and "MovieShots"
// in en_rec.jpg. Two things do it, neither in the crop or resize code:
//   - the commas: the DB box ends at row 25 while the ink reaches row 26, and
//     get_rotate_crop_image's crop (height int(18) from row 7) stops at row 24, so the comma
//     tails are cut off;
//   - "vi": in italics at this scale the recogniser reads "ut", "ie" or "zi" from every crop of
//     the line between 18 and 28 rows tall; only the whole 30-row image, where the text fills
//     less of the height, reads "vi".
var (
	paddleENRec = []paddleLine{
		{[4][2]float64{{5, 7}, {694, 7}, {694, 25}, {5, 25}}, "To facilitate the shot type analysis in videoswe collect MouteShotsa large-scale", 0.952},
	}
	paddleEN = []paddleLine{
		{[4][2]float64{{6, 8}, {21, 8}, {21, 23}, {6, 23}}, "3", 0.837},
		{[4][2]float64{{47, 7}, {287, 7}, {287, 25}, {47, 25}}, "MouieShotsDataset", 0.936},
		{[4][2]float64{{5, 52}, {699, 53}, {699, 73}, {5, 72}}, "To facilitate the shot type analysis in videos,we collect MouteShotsa large-scale", 0.975},
		{[4][2]float64{{6, 78}, {698, 78}, {698, 96}, {6, 96}}, "shot type annotation set that contains 46K shots from 7858 movies.The details", 0.986},
		{[4][2]float64{{7, 102}, {336, 102}, {336, 120}, {7, 120}}, "of this dataset are specified as follows", 0.954},
	}
)

// TestOCRReadsAsPaddleOCR: detection and recognition find exactly PaddleOCR's boxes in both
// real images and read exactly its text, with its confidences (to 3 decimals).
func TestOCRReadsAsPaddleOCR(t *testing.T) {
	r := newOCR(t, false)
	for _, tc := range []struct {
		file string
		want []paddleLine
	}{{"en_rec.jpg", paddleENRec}, {"en.jpg", paddleEN}} {
		lines, err := r.Read(context.Background(), loadShared(t, "models/ppocr-en/"+tc.file))
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range lines[0] {
			t.Logf("%s box %d %v: %q (%.3f)", tc.file, i, l.Box, l.Text, l.Score)
		}
		if len(lines[0]) != len(tc.want) {
			t.Fatalf("%s: %d lines, want %d", tc.file, len(lines[0]), len(tc.want))
		}
		for i, w := range tc.want {
			g := lines[0][i]
			if g.Box != w.box || g.Text != w.text || math.Abs(g.Score-w.score) > 5e-4 {
				t.Errorf("%s line %d: %v %q %.4f; PaddleOCR reads %v %q %.3f", tc.file, i, g.Box, g.Text, g.Score, w.box, w.text, w.score)
			}
		}
	}
}

// TestOCRFourLinesAccuracy measures en.jpg read through detection against its true text: the
// heading's number and title are separate boxes on one line, as PaddleOCR finds them. With
// PaddleOCR's reading above, 5 of the 191 characters (spaces aside) are wrong: "vi" twice
// ("Moui", "Mout"), two commas and a full stop.
func TestOCRFourLinesAccuracy(t *testing.T) {
	r := newOCR(t, false)
	lines, err := r.Read(context.Background(), loadShared(t, "models/ppocr-en/en.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	// Group the boxes into lines: boxes whose vertical extents overlap by half share a line.
	var got []string
	var lastTop, lastBottom float64 = -1, -1
	for _, l := range lines[0] {
		top, bottom := l.Box[0][1], l.Box[2][1]
		if len(got) > 0 && min(bottom, lastBottom)-max(top, lastTop) > 0.5*(bottom-top) {
			got[len(got)-1] += " " + l.Text
			continue
		}
		got = append(got, l.Text)
		lastTop, lastBottom = top, bottom
	}
	if len(got) != len(enLines) {
		t.Fatalf("found %d lines %q, want %d", len(got), got, len(enLines))
	}
	acc := charAccuracy(got, enLines)
	t.Logf("en.jpg through detection: character accuracy %.4f", acc)
	if want := 1 - 5.0/191; math.Abs(acc-want) > 1e-9 {
		t.Errorf("character accuracy %.4f, want %.4f (5 errors in 191): read %q", acc, want, got)
	}
}

// TestOCRFlowGRPORewardENRec: Flow-GRPO's reward for "MovieShots" on en_rec.jpg. Read whole
// (detect=false) the line contains "movieshots" and scores 1. Through detection PaddleOCR reads
// "mouteshotsa" in a 71-character line: the substring test fails and the Levenshtein distance of
// the whole line to the 10-character target is capped at 10, so the reward is 0, as Flow-GRPO
// would compute it from PaddleOCR's reading.
func TestOCRFlowGRPORewardENRec(t *testing.T) {
	modeltest.Runtime(t)
	testenv.SharedFile(t, "models/"+rewards.DefaultOCRDetector)
	env := rewards.Env{ModelDir: filepath.Join(testenv.SharedDir(), "models")}
	img := loadShared(t, "models/ppocr-en/en_rec.jpg")
	for spec, want := range map[string]float64{"ocr:detect=false": 1, "ocr": 0} {
		r, err := rewards.Parse(spec, env)
		if err != nil {
			t.Fatal(err)
		}
		scores, parts, err := rewards.Explain(context.Background(), r, img, `a line that says "MovieShots"`)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: reward %g, read %q", spec, scores[0], parts[0][0].Text)
		if scores[0] != want {
			t.Errorf("%s: reward %g, want %g (read %q)", spec, scores[0], want, parts[0][0].Text)
		}
	}
}

// TestOCRMinScore: min-score is the box-confidence threshold. At PaddleOCR's 0.5 every line of
// en.jpg is kept; at 0.9 the heading's "3" (0.837) is dropped; at 0.99 nothing is left, and
// the reward is 0. Values outside [0, 1], non-numbers and misspellings are errors.
func TestOCRMinScore(t *testing.T) {
	modeltest.Runtime(t)
	testenv.SharedFile(t, "models/"+rewards.DefaultOCRDetector)
	env := rewards.Env{ModelDir: filepath.Join(testenv.SharedDir(), "models")}
	img := loadShared(t, "models/ppocr-en/en.jpg")
	for _, tc := range []struct {
		spec  string
		lines int
		score float64
	}{
		{"ocr", 5, 1},                // the heading's "3" is read
		{"ocr:min-score=0", 5, 1},    // every line read
		{"ocr:min-score=0.9", 4, 0},  // "3" dropped, and no other line holds a 3
		{"ocr:min-score=0.99", 0, 0}, // nothing left
	} {
		r, err := rewards.Parse(tc.spec, env)
		if err != nil {
			t.Fatal(err)
		}
		scores, parts, err := rewards.Explain(context.Background(), r, img, `a heading "3"`)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		read := parts[0][0].Text
		n := 0
		if read != "" {
			n = strings.Count(read, "\n") + 1
		}
		t.Logf("%s: %d lines, reward %g", tc.spec, n, scores[0])
		if n != tc.lines || scores[0] != tc.score {
			t.Errorf("%s: %d lines, reward %g; want %d, %g (read %q)", tc.spec, n, scores[0], tc.lines, tc.score, read)
		}
	}
	for spec, want := range map[string]string{
		"ocr:min-score=1.5":  "min-score=1.5 is not a probability",
		"ocr:min-score=-0.1": "min-score=-0.1 is not a probability",
		"ocr:min-score=high": `option min-score="high" is not a number`,
		"ocr:min-scor=0.5":   `unknown option "min-scor" (did you mean "min-score"?)`,
	} {
		if r, err := rewards.Parse(spec, env); err == nil || !strings.Contains(err.Error(), want) {
			if r != nil {
				r.Close()
			}
			t.Errorf("%s: err %v, want one containing %q", spec, err, want)
		}
	}
}

// charAccuracy is 1 - (sum of Levenshtein distances) / (characters wanted), comparing
// lowercase text without spaces line by line.
func charAccuracy(got, want []string) float64 {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), " ", "") }
	var dist, total int
	for i := range want {
		g := ""
		if i < len(got) {
			g = got[i]
		}
		dist += rewards.Levenshtein(norm(g), norm(want[i]))
		total += len([]rune(norm(want[i])))
	}
	return 1 - float64(dist)/float64(total)
}

// renderText draws lines of text (size pixels tall, colour fg on bg) into a w x h image.
func renderText(t testing.TB, ttf []byte, size float64, fg, bg color.Color, w, h int, lines ...string) image.Image {
	t.Helper()
	f, err := opentype.Parse(ttf)
	if err != nil {
		t.Fatal(err)
	}
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		t.Fatal(err)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(bg), image.Point{}, draw.Src)
	d := font.Drawer{Dst: img, Src: image.NewUniform(fg), Face: face}
	for i, l := range lines {
		d.Dot = fixed.P(int(size), int(size*(1.6+1.8*float64(i))))
		d.DrawString(l)
	}
	return img
}

type rendered struct {
	name   string
	ttf    []byte
	size   float64
	fg, bg color.RGBA
	lines  []string
}

// renderedSet is the project's own text images: four of Go's fonts (regular, bold, mono,
// italic), sizes from 16 to 40 pixels, dark on light, light on dark and coloured.
var renderedSet = []rendered{
	{"regular 24 black on white", goregular.TTF, 24, color.RGBA{0, 0, 0, 255}, color.RGBA{255, 255, 255, 255}, []string{"Hello World 2024", "steering diffusion models"}},
	{"bold 32 white on navy", gobold.TTF, 32, color.RGBA{255, 255, 255, 255}, color.RGBA{20, 30, 90, 255}, []string{"OPEN SESAME", "fksteer reads text"}},
	{"mono 20 red on yellow", gomono.TTF, 20, color.RGBA{200, 20, 20, 255}, color.RGBA{250, 240, 180, 255}, []string{"particle filter 42", "Feynman-Kac weights"}},
	{"italic 40 green on black", goitalic.TTF, 40, color.RGBA{30, 160, 60, 255}, color.RGBA{0, 0, 0, 255}, []string{"Quick brown fox", "jumps over dogs"}},
	{"regular 16 grey on grey", goregular.TTF, 16, color.RGBA{60, 60, 60, 255}, color.RGBA{230, 230, 230, 255}, []string{"small text is harder to read", "but should still work fine"}},
}

// TestOCRReadsRenderedText reads back text the test renders itself with known content and
// requires at least 90% character accuracy over the set (lowercase, spaces ignored).
func TestOCRReadsRenderedText(t *testing.T) {
	r := newOCR(t, false)
	var got, want []string
	for _, s := range renderedSet {
		imgs := rewards.FromImage(renderText(t, s.ttf, s.size, s.fg, s.bg, 512, 256, s.lines...))
		lines, err := r.Read(context.Background(), imgs)
		if err != nil {
			t.Fatal(err)
		}
		var texts []string
		for _, l := range lines[0] {
			texts = append(texts, l.Text)
		}
		t.Logf("%s: %q", s.name, texts)
		got = append(got, strings.Join(texts, " "))
		want = append(want, strings.Join(s.lines, " "))
	}
	acc := charAccuracy(got, want)
	t.Logf("rendered text: character accuracy %.4f over %d images", acc, len(renderedSet))
	if acc < 0.9 {
		t.Errorf("character accuracy %.3f < 0.90", acc)
	}
}

// TestOCRRewardScoresABatch scores rendered images against a quoted prompt in one call: the
// image showing the text scores 1, one showing other text less, and Explain reports what was
// read.
func TestOCRRewardScoresABatch(t *testing.T) {
	modeltest.Runtime(t)
	testenv.SharedFile(t, "models/"+rewards.DefaultOCRDetector)
	dir := filepath.Join(testenv.SharedDir(), "models")
	r, err := rewards.Parse("ocr", rewards.Env{ModelDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	black, white := color.RGBA{0, 0, 0, 255}, color.RGBA{255, 255, 255, 255}
	imgs := pixels.NewImages(3, 3, 128, 384)
	for i, text := range []string{"Open Sesame", "Open Sesane", "Sesame"} {
		copy(imgs.At(i), rewards.FromImage(renderText(t, goregular.TTF, 32, black, white, 384, 128, text)).Pix)
	}
	scores, parts, err := rewards.Explain(context.Background(), r, imgs, `a door with "Open Sesame" written on it`)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range parts {
		t.Logf("image %d: score %.3f, read %q", i, scores[i], p[0].Text)
		if len(p) != 1 || !p[0].HasText || p[0].Score != scores[i] {
			t.Errorf("image %d: breakdown %+v", i, p)
		}
	}
	// Worked by hand, if the text is read as rendered: exact match 1; one substitution in the
	// 10 characters of "opensesame" 0.9; "sesame" lacks the 4 characters of "open": 0.6.
	want := []float64{1, 0.9, 0.6}
	for i := range want {
		if math.Abs(scores[i]-want[i]) > 1e-9 {
			t.Errorf("image %d (read %q): score %g, want %g", i, parts[i][0].Text, scores[i], want[i])
		}
	}
	if err := r.Score(context.Background(), imgs, "no quotes here", scores); err == nil || !strings.Contains(err.Error(), "target=") {
		t.Errorf("a prompt without quoted text: err %v, want one naming target=", err)
	}
}
