package glyphs

import (
	"fmt"
	"hash/fnv"
	"image"
	"math"
	"slices"
	"sync"

	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/sfnt"
)

// Image geometry: every image is Channels x Side x Side, NCHW, ImageLen values.
const (
	Side     = 32
	Channels = 3
	ImageLen = Channels * Side * Side
)

// Color is a named colour with its exact 8-bit RGB value.
type Color struct {
	Name    string
	R, G, B uint8
}

// The colour tables. Order matters: it fixes the order of the images.
var (
	textColors = []Color{
		{"red", 230, 25, 25},
		{"green", 0, 170, 0},
		{"blue", 30, 60, 255},
		{"yellow", 255, 220, 0},
		{"white", 255, 255, 255},
		{"black", 0, 0, 0},
	}
	backgrounds = []Color{
		{"white", 255, 255, 255},
		{"black", 0, 0, 0},
		{"gray", 128, 128, 128},
		{"navy", 0, 0, 128},
	}
	// texts are the single characters, then the words; every word fits 32 pixels in every font.
	texts = []string{
		"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M",
		"N", "O", "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z",
		"0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
		"go", "ok", "hi", "fk", "cat", "dog", "sun", "yes",
	}
	fonts = []struct {
		name string
		ttf  []byte
	}{
		{"goregular", goregular.TTF},
		{"gobold", gobold.TTF},
		{"gomono", gomono.TTF},
	}
	// positions move the centred text by whole pixels.
	positions = []struct {
		name   string
		dx, dy int
	}{
		{"center", 0, 0},
		{"left", -3, 0},
		{"right", 3, 0},
		{"up", 0, -3},
		{"down", 0, 3},
	}
)

// Text layout: the font size of each (text, font) is the largest whole pixel size, at most
// maxPPEM, whose ink fits maxInkW x maxInkH pixels. Centred and moved at most 3 pixels, such ink
// stays at least one pixel inside the image, so no glyph is clipped.
const (
	maxPPEM = 32
	minPPEM = 6
	maxInkW = 24
	maxInkH = 20
)

// Texts returns the texts drawn, in image order: A-Z, 0-9, then the words.
func Texts() []string { return slices.Clone(texts) }

// TextColors returns the text colours, in image order.
func TextColors() []Color { return slices.Clone(textColors) }

// Backgrounds returns the background colours, in image order.
func Backgrounds() []Color { return slices.Clone(backgrounds) }

// Fonts returns the names of the Go fonts used (golang.org/x/image/font/gofont/<name>).
func Fonts() []string {
	names := make([]string, len(fonts))
	for i, f := range fonts {
		names[i] = f.name
	}
	return names
}

// Positions returns the names of the text placements: centred, or moved 3 pixels left, right,
// up or down.
func Positions() []string {
	names := make([]string, len(positions))
	for i, p := range positions {
		names[i] = p.name
	}
	return names
}

// Item describes one image: what is written, in which colour, on which background. Font and
// Position are informative; prompts cannot ask for them.
type Item struct {
	Text       string // as in Texts: "A", "7", "cat"
	Color      string // text colour name
	Background string // background colour name
	Font       string
	Position   string
}

// Dataset is the fixed set of images the glyphs model generates. It is immutable: slices it
// returns share its storage and must not be modified.
type Dataset struct {
	items []Item
	pix   []float32 // Len() images of ImageLen values, NCHW, in [-1, 1]
}

// Len is the number of images, M.
func (d *Dataset) Len() int { return len(d.items) }

// Item returns the tags of image i.
func (d *Dataset) Item(i int) Item { return d.items[i] }

// Image returns image i in data space: ImageLen values in [-1, 1], CHW. It shares the
// data set's storage.
func (d *Dataset) Image(i int) []float32 {
	return d.pix[i*ImageLen : (i+1)*ImageLen : (i+1)*ImageLen]
}

// Pixels returns all images, M*ImageLen values in [-1, 1], NCHW. It shares the data set's
// storage.
func (d *Dataset) Pixels() []float32 { return d.pix }

// ImageNRGBA returns image i as an 8-bit image, for viewing.
func (d *Dataset) ImageNRGBA(i int) *image.NRGBA { return ToNRGBA(d.Image(i)) }

// ToNRGBA converts one CHW data-space image of Side x Side pixels (such as the denoiser's x0) to
// 8-bit RGB: p = round((v+1)/2 * 255), clamped to [0, 255], NaN giving 0. For the data set's
// own images it inverts the rendering exactly. It panics if x does not hold ImageLen values.
func ToNRGBA(x []float32) *image.NRGBA {
	if len(x) != ImageLen {
		panic(fmt.Sprintf("glyphs.ToNRGBA: got %d values, want %d", len(x), ImageLen))
	}
	img := image.NewNRGBA(image.Rect(0, 0, Side, Side))
	const plane = Side * Side
	for i := range plane {
		for c := range Channels {
			v := math.Round((float64(x[c*plane+i]) + 1) / 2 * 255)
			if math.IsNaN(v) {
				v = 0
			}
			img.Pix[4*i+c] = uint8(max(0, min(255, v)))
		}
		img.Pix[4*i+3] = 255
	}
	return img
}

// load is the memoised data set shared by Load's callers.
var load = sync.OnceValues(Render)

// Load returns the data set, rendering it on first use; later calls return the same *Dataset.
func Load() (*Dataset, error) { return load() }

// Render draws the data set afresh. The result is bit-identical on every run and platform.
// Most callers want Load, which renders once per process.
func Render() (*Dataset, error) {
	faces := make([]*sfnt.Font, len(fonts))
	for i, f := range fonts {
		p, err := sfnt.Parse(f.ttf)
		if err != nil {
			return nil, fmt.Errorf("glyphs: parse font %s: %w", f.name, err)
		}
		faces[i] = p
	}
	// The items first, so that the pixels are allocated once.
	type plan struct{ font, pos int }
	var (
		items []Item
		plans []plan
	)
	for _, text := range texts {
		for _, fg := range textColors {
			for _, bg := range backgrounds {
				if fg.Name == bg.Name {
					continue
				}
				fi, pi := pick(text, fg.Name, bg.Name)
				items = append(items, Item{
					Text: text, Color: fg.Name, Background: bg.Name, Font: fonts[fi].name, Position: positions[pi].name,
				})
				plans = append(plans, plan{fi, pi})
			}
		}
	}
	// Masks depend only on text and font: draw each once.
	type key struct {
		text string
		font int
	}
	masks := map[key][]uint8{}
	d := &Dataset{items: items, pix: make([]float32, len(items)*ImageLen)}
	for i, it := range items {
		p := plans[i]
		k := key{it.Text, p.font}
		mask, ok := masks[k]
		if !ok {
			var err error
			if mask, err = centredMask(faces[p.font], it.Text); err != nil {
				return nil, fmt.Errorf("glyphs: draw %q in %s: %w", it.Text, it.Font, err)
			}
			masks[k] = mask
		}
		compose(d.pix[i*ImageLen:(i+1)*ImageLen], mask, positions[p.pos].dx, positions[p.pos].dy,
			colorNamed(textColors, it.Color), colorNamed(backgrounds, it.Background))
	}
	return d, nil
}

// colorNamed returns the colour called name in table, which holds it.
func colorNamed(table []Color, name string) Color {
	i := slices.IndexFunc(table, func(c Color) bool { return c.Name == name })
	return table[i]
}

// pick chooses an item's font and position from the FNV-1a hash of "text\x00colour\x00background":
// font = h mod 3, position = (h div 3) mod 5. A hash spreads fonts and positions over the
// attributes prompts can ask for, and is fixed forever, unlike a random generator's stream.
func pick(text, fg, bg string) (font, pos int) {
	h := fnv.New32a()
	h.Write([]byte(text + "\x00" + fg + "\x00" + bg))
	s := h.Sum32()
	return int(s % uint32(len(fonts))), int(s / uint32(len(fonts)) % uint32(len(positions)))
}

// centredMask draws text at the largest size that fits maxInkW x maxInkH pixels, with its ink
// box centred in the image, and returns the coverage.
func centredMask(f *sfnt.Font, text string) ([]uint8, error) {
	for ppem := maxPPEM; ppem >= minPPEM; ppem-- {
		o, err := layout(f, text, ppem)
		if err != nil {
			return nil, err
		}
		if o.maxX-o.minX > maxInkW*unit || o.maxY-o.minY > maxInkH*unit {
			continue
		}
		dx := Side*unit/2 - floorDiv(o.minX+o.maxX, 2)
		dy := Side*unit/2 - floorDiv(o.minY+o.maxY, 2)
		return rasterize(o, dx, dy, Side, Side), nil
	}
	return nil, fmt.Errorf("does not fit %dx%d pixels at %d ppem", maxInkW, maxInkH, minPPEM)
}

// compose writes into out (ImageLen values) the CHW data-space image of mask, moved by (dx, dy)
// pixels, painted in fg over bg. Blending is integer (p = (bg*(255-a) + fg*a + 127) / 255) and the conversion to
// [-1, 1] is one correctly rounded float32 division, (2p-255)/255, so values are exact everywhere.
func compose(out []float32, mask []uint8, dx, dy int, fg, bg Color) {
	const plane = Side * Side
	fgc := [Channels]int{int(fg.R), int(fg.G), int(fg.B)}
	bgc := [Channels]int{int(bg.R), int(bg.G), int(bg.B)}
	for y := range Side {
		for x := range Side {
			a := 0
			if sx, sy := x-dx, y-dy; sx >= 0 && sx < Side && sy >= 0 && sy < Side {
				a = int(mask[sy*Side+sx])
			}
			for c := range Channels {
				p := (bgc[c]*(255-a) + fgc[c]*a + 127) / 255
				out[c*plane+y*Side+x] = float32(2*p-255) / 255
			}
		}
	}
}
