package glyphs_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/models/glyphs"
)

// The data set is pinned: any change to fonts, colours, layout or rasterising changes these, and
// with them the cached model's name. Update them only on purpose, saying why in the commit.
const (
	wantM      = 968 // 44 texts x 22 (colour, background) pairs
	wantPixels = "e04ea15c2437e7b52c8b126208d51a5057d0dbfcf61ce15bcc21e922b8a70351"
)

// load returns the shared data set.
func load(t testing.TB) *glyphs.Dataset {
	t.Helper()
	d, err := glyphs.Load()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pixelSum is the SHA-256 of the pixels as little-endian float32.
func pixelSum(d *glyphs.Dataset) string {
	h := sha256.New()
	var b [4]byte
	for _, v := range d.Pixels() {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestDatasetIsPinned(t *testing.T) {
	d := load(t)
	if d.Len() != wantM {
		t.Fatalf("M = %d, want %d", d.Len(), wantM)
	}
	if len(d.Pixels()) != wantM*glyphs.ImageLen {
		t.Fatalf("%d pixel values, want %d", len(d.Pixels()), wantM*glyphs.ImageLen)
	}
	if got := pixelSum(d); got != wantPixels {
		t.Errorf("pixel checksum %s, want %s", got, wantPixels)
	}
	again, err := glyphs.Render()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Pixels(), d.Pixels()) {
		t.Error("a second rendering differs from the first")
	}
	if d2 := load(t); d2 != d {
		t.Error("Load rendered twice")
	}
}

func TestTags(t *testing.T) {
	d := load(t)
	seen := map[glyphs.Item]bool{}
	fonts, positions := map[string]int{}, map[string]int{}
	for i := range d.Len() {
		it := d.Item(i)
		if it.Color == it.Background {
			t.Errorf("image %d: %s text on %s", i, it.Color, it.Background)
		}
		key := glyphs.Item{Text: it.Text, Color: it.Color, Background: it.Background}
		if seen[key] {
			t.Errorf("image %d: %v appears twice", i, key)
		}
		seen[key] = true
		fonts[it.Font]++
		positions[it.Position]++
	}
	for _, text := range glyphs.Texts() {
		for _, fg := range glyphs.TextColors() {
			for _, bg := range glyphs.Backgrounds() {
				if fg.Name != bg.Name && !seen[glyphs.Item{Text: text, Color: fg.Name, Background: bg.Name}] {
					t.Errorf("%s %s on %s is missing", text, fg.Name, bg.Name)
				}
			}
		}
	}
	for _, f := range glyphs.Fonts() {
		if fonts[f] < d.Len()/5 {
			t.Errorf("font %s drawn %d times: the hash should spread fonts evenly", f, fonts[f])
		}
	}
	for _, p := range glyphs.Positions() {
		if positions[p] < d.Len()/8 {
			t.Errorf("position %s used %d times: the hash should spread positions evenly", p, positions[p])
		}
	}
	if it := d.Item(0); it != (glyphs.Item{Text: "A", Color: "red", Background: "white", Font: it.Font, Position: it.Position}) {
		t.Errorf("image 0 is %v, want A red on white", it)
	}
}

// TestImages checks every image: values on the 8-bit grid, a border of pure background (no
// glyph is clipped), some ink, and no two images alike.
func TestImages(t *testing.T) {
	d := load(t)
	colors := map[string]glyphs.Color{}
	for _, c := range append(glyphs.TextColors(), glyphs.Backgrounds()...) {
		colors[c.Name] = c
	}
	distinct := map[string]int{}
	for i := range d.Len() {
		it := d.Item(i)
		img := d.ImageNRGBA(i)
		for k, v := range d.Image(i) {
			p := math.Round((float64(v) + 1) / 2 * 255)
			if float32(2*p-255)/255 != v {
				t.Fatalf("image %d value %d = %v is not (2p-255)/255 for an 8-bit p", i, k, v)
			}
		}
		bg, fg := colors[it.Background], colors[it.Color]
		ink, full := 0, 0
		for y := range glyphs.Side {
			for x := range glyphs.Side {
				c := img.NRGBAAt(x, y)
				isBG := c.R == bg.R && c.G == bg.G && c.B == bg.B
				if !isBG {
					ink++
				}
				if c.R == fg.R && c.G == fg.G && c.B == fg.B {
					full++
				}
				if (x == 0 || y == 0 || x == glyphs.Side-1 || y == glyphs.Side-1) && !isBG {
					t.Errorf("image %d (%v): border pixel (%d,%d) = %v is not the background", i, it, x, y, c)
				}
			}
		}
		if ink < 20 || full < 5 {
			t.Errorf("image %d (%v): %d inked pixels, %d fully covered: text missing or faint", i, it, ink, full)
		}
		sum := sha256.Sum256(img.Pix)
		if j, ok := distinct[string(sum[:])]; ok {
			t.Errorf("images %d and %d are identical", j, i)
		}
		distinct[string(sum[:])] = i
	}
}

func TestToNRGBAInvertsRendering(t *testing.T) {
	d := load(t)
	for _, i := range []int{0, 100, d.Len() - 1} {
		img := d.ImageNRGBA(i)
		const plane = glyphs.Side * glyphs.Side
		for k := range plane {
			for c := range glyphs.Channels {
				want := float32(2*int(img.Pix[4*k+c])-255) / 255
				if got := d.Image(i)[c*plane+k]; got != want {
					t.Fatalf("image %d channel %d pixel %d: data %v, 8-bit gives %v", i, c, k, got, want)
				}
			}
		}
	}
}

func TestMatch(t *testing.T) {
	d := load(t)
	all := d.Len()
	tests := []struct {
		prompt  string
		n       int
		matched bool
		query   *glyphs.Query // checked when set
	}{
		{`a red "A" on black`, 1, true, &glyphs.Query{Texts: []string{"A"}, Colors: []string{"red"}, Backgrounds: []string{"black"}}},
		{`the word cat`, 22, true, &glyphs.Query{Texts: []string{"cat"}}},
		{`"7" in yellow`, 4, true, &glyphs.Query{Texts: []string{"7"}, Colors: []string{"yellow"}}},
		{`on navy`, 44 * 6, true, &glyphs.Query{Backgrounds: []string{"navy"}}},
		{`blue "Q"`, 4, true, nil},
		{`a red A`, 44 * 4, true, &glyphs.Query{Colors: []string{"red"}}}, // unquoted letters are words
		{`"a"`, 22, true, &glyphs.Query{Texts: []string{"A"}}},
		{`white text on a black background`, 44, true, &glyphs.Query{Colors: []string{"white"}, Backgrounds: []string{"black"}}},
		{`a photo of a dog`, 22, true, nil},
		{`go cat`, 44, true, &glyphs.Query{Texts: []string{"go", "cat"}}},
		{`digit 3 in green on gray`, 1, true, nil},
		{"Grey background, \u201cok\u201d in yellow", 1, true, &glyphs.Query{Texts: []string{"ok"}, Colors: []string{"yellow"}, Backgrounds: []string{"gray"}}},
		{`on "A" black`, 3, true, &glyphs.Query{Texts: []string{"A"}, Colors: []string{"black"}}},
		{`a red "A" on black, in blue`, 2, true, nil},
		{`"cat" dog`, 22, true, &glyphs.Query{Texts: []string{"cat"}}}, // the quoted text wins
		{`navy text`, all, false, &glyphs.Query{Colors: []string{"navy"}}},
		{`"red" on white`, all, false, &glyphs.Query{Texts: []string{"red"}, Backgrounds: []string{"white"}}},
		{`"HELLO"`, all, false, &glyphs.Query{Texts: []string{"hello"}}},
		{`blue "Q" on a blue background`, all, false, nil},
		{`a watercolour of a lighthouse`, all, false, &glyphs.Query{}},
		{``, all, false, &glyphs.Query{}},
	}
	for _, tt := range tests {
		t.Run(tt.prompt, func(t *testing.T) {
			s := d.Match(tt.prompt)
			if s.N != tt.n || s.Matched != tt.matched {
				t.Errorf("N = %d, Matched = %v; want %d, %v (query %+v)", s.N, s.Matched, tt.n, tt.matched, s.Query)
			}
			if n := count(s.Mask); n != s.N || len(s.Mask) != all {
				t.Errorf("mask of %d selects %d, N = %d", len(s.Mask), n, s.N)
			}
			if tt.query != nil && !sameQuery(s.Query, *tt.query) {
				t.Errorf("query %+v, want %+v", s.Query, *tt.query)
			}
			for i, on := range s.Mask {
				if tt.matched && on != s.Query.Matches(d.Item(i)) {
					t.Fatalf("image %d (%v): selected %v, Matches %v", i, d.Item(i), on, !on)
				}
			}
		})
	}
}

func count(mask []bool) int {
	n := 0
	for _, on := range mask {
		if on {
			n++
		}
	}
	return n
}

func sameQuery(a, b glyphs.Query) bool {
	return slices.Equal(a.Texts, b.Texts) && slices.Equal(a.Colors, b.Colors) && slices.Equal(a.Backgrounds, b.Backgrounds)
}

func TestLogPrior(t *testing.T) {
	d := load(t)
	s := d.Match(`"7" in yellow`)
	lp := d.LogPrior(`"7" in yellow`)
	if len(lp) != d.Len() {
		t.Fatalf("%d log-weights, want %d", len(lp), d.Len())
	}
	for i, v := range lp {
		if want := map[bool]float32{true: 0, false: glyphs.LogZero}[s.Mask[i]]; v != want {
			t.Fatalf("log prior %d = %v, want %v", i, v, want)
		}
	}
	for i, v := range d.LogPrior("") {
		if v != 0 {
			t.Fatalf("empty prompt: log prior %d = %v, want 0", i, v)
		}
	}
}

func TestPosteriorWeights(t *testing.T) {
	d := load(t)
	s := d.Match("on navy")
	x := make([]float32, glyphs.ImageLen) // the origin: every image is equally far at t = 1
	w := glyphs.PosteriorWeights(d, x, 1, s.LogPrior())
	var sum float64
	for i, v := range w {
		sum += v
		want := 0.0
		if s.Mask[i] {
			want = 1 / float64(s.N)
		}
		if math.Abs(v-want) > 1e-12 {
			t.Fatalf("t=1: weight %d = %v, want %v", i, v, want)
		}
	}
	if math.Abs(sum-1) > 1e-12 {
		t.Errorf("weights sum to %v", sum)
	}
	// A nil prior is the uniform one.
	img := d.Image(5)
	a := glyphs.PosteriorWeights(d, img, 0.8, nil)
	b := glyphs.PosteriorWeights(d, img, 0.8, make([]float32, d.Len()))
	if !slices.Equal(a, b) {
		t.Error("nil prior differs from a zero prior")
	}
}

// TestPosteriorMeanNearZero checks that as t -> 0 the posterior mean of a noised image is that
// image, or, when the prior rules it out, the nearest image the prior allows.
func TestPosteriorMeanNearZero(t *testing.T) {
	d := load(t)
	for _, m := range []int{0, 123, 500, d.Len() - 1} {
		img := d.Image(m)
		for _, tv := range []float64{0.01, 1e-3, 0} {
			x := make([]float32, glyphs.ImageLen)
			for k := range x {
				eps := float32(math.Sin(float64(k))) // fixed, noise-like
				x[k] = float32(1-tv)*img[k] + float32(tv)*eps
			}
			got := glyphs.PosteriorMean(d, x, tv, nil)
			if e := maxAbs(got, img); e > 1e-6 {
				t.Errorf("image %d, t=%v: posterior mean is %.3g from the image", m, tv, e)
			}
		}
		// Rule image m out: the mean moves to the nearest allowed image.
		prior := make([]float32, d.Len())
		prior[m] = glyphs.LogZero
		nearest, best := -1, math.Inf(1)
		for j := range d.Len() {
			if j == m {
				continue
			}
			if dist := sqDist(d.Image(j), img); dist < best {
				nearest, best = j, dist
			}
		}
		got := glyphs.PosteriorMean(d, img, 1e-3, prior)
		if e := maxAbs(got, d.Image(nearest)); e > 1e-6 {
			t.Errorf("image %d ruled out: mean is %.3g from the nearest allowed image %d (%v)", m, e, nearest, d.Item(nearest))
		}
	}
}

func maxAbs(a, b []float32) float64 {
	var e float64
	for k := range a {
		e = max(e, math.Abs(float64(a[k])-float64(b[k])))
	}
	return e
}

func sqDist(a, b []float32) float64 {
	var s float64
	for k := range a {
		d := float64(a[k]) - float64(b[k])
		s += d * d
	}
	return s
}

func ExampleDataset_Match() {
	d, err := glyphs.Load()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, prompt := range []string{`a red "A" on black`, `"7" in yellow`, "the word cat", "on navy", "a lighthouse"} {
		s := d.Match(prompt)
		fmt.Printf("%-20s %3d of %d images, matched: %v\n", prompt, s.N, d.Len(), s.Matched)
	}
	// Output:
	// a red "A" on black     1 of 968 images, matched: true
	// "7" in yellow          4 of 968 images, matched: true
	// the word cat          22 of 968 images, matched: true
	// on navy              264 of 968 images, matched: true
	// a lighthouse         968 of 968 images, matched: false
}
