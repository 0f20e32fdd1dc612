package glyphs

// Text rendering with integer arithmetic only.
//
// x/image/vector (behind opentype.Face) rasterises in float32, and Go may fuse a*b+c into one
// multiply-add on arm64 and other platforms, so its anti-aliased edges can differ in the last
// bit from one GOARCH to another. The data set has to be bit-identical everywhere (its checksum
// is pinned and names the cached model), so glyphs are drawn here from sfnt's outlines, which
// sfnt scales with integer arithmetic, by a small scanline rasteriser that uses integers too:
// curves are flattened to lines, and coverage is counted on an 8x8 grid of samples per pixel
// with the non-zero winding rule.

import (
	"cmp"
	"fmt"
	"slices"

	"golang.org/x/image/font"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// Rasteriser constants. Coordinates are 26.6 fixed point: 64 units per pixel.
const (
	unit       = 64 // fixed-point units per pixel
	subsamples = 8  // samples per pixel along each axis
	subStep    = unit / subsamples
	flatTol    = unit / 16 // curve flattening tolerance: 1/16 pixel
	maxFlat    = 64        // most line pieces per curve
	fullCover  = subsamples * subsamples
)

// edge is a straight piece of an outline, from (x0, y0) to (x1, y1) in 26.6 units, y down.
type edge struct{ x0, y0, x1, y1 int64 }

// outline is a text's outline flattened to edges, with the bounding box of its ink.
type outline struct {
	edges                  []edge
	minX, minY, maxX, maxY int64
}

// divRound divides a by b > 0, rounding halves away from zero.
func divRound(a, b int64) int64 {
	if a >= 0 {
		return (a + b/2) / b
	}
	return -((-a + b/2) / b)
}

// floorDiv divides a by b > 0, rounding towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// pieces is how many straight pieces a curve whose control polygon bends by dev units needs for
// the flattening error to stay within flatTol (about dev/(8 n^2) for a quadratic).
func pieces(dev int64) int64 {
	n := int64(1)
	for n < maxFlat && dev > 8*flatTol*n*n {
		n++
	}
	return n
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// flattener turns a sequence of path segments into edges.
type flattener struct {
	o              outline
	startX, startY int64 // first point of the current contour
	x, y           int64 // current point
	open           bool  // a contour is in progress
}

func (f *flattener) lineTo(x, y int64) {
	if y != f.y { // horizontal edges never cross a sample row
		f.o.edges = append(f.o.edges, edge{f.x, f.y, x, y})
	}
	f.x, f.y = x, y
	f.o.minX, f.o.maxX = min(f.o.minX, x), max(f.o.maxX, x)
	f.o.minY, f.o.maxY = min(f.o.minY, y), max(f.o.maxY, y)
}

// close ends the current contour with a line back to its first point.
func (f *flattener) close() {
	if f.open && (f.x != f.startX || f.y != f.startY) {
		f.lineTo(f.startX, f.startY)
	}
	f.open = false
}

func (f *flattener) moveTo(x, y int64) {
	f.close()
	f.startX, f.startY, f.x, f.y, f.open = x, y, x, y, true
	f.o.minX, f.o.maxX = min(f.o.minX, x), max(f.o.maxX, x)
	f.o.minY, f.o.maxY = min(f.o.minY, y), max(f.o.maxY, y)
}

// quadTo flattens a quadratic Bézier by evaluating it exactly at n evenly spaced parameters
// (B(i/n) = ((n-i)^2 p0 + 2i(n-i) p1 + i^2 p2) / n^2) and rounding.
func (f *flattener) quadTo(x1, y1, x2, y2 int64) {
	x0, y0 := f.x, f.y
	n := pieces(max(abs64(x0-2*x1+x2), abs64(y0-2*y1+y2)))
	for i := int64(1); i <= n; i++ {
		a, b, c := (n-i)*(n-i), 2*i*(n-i), i*i
		f.lineTo(divRound(a*x0+b*x1+c*x2, n*n), divRound(a*y0+b*y1+c*y2, n*n))
	}
}

// cubeTo flattens a cubic Bézier in the same way. (The Go fonts are TrueType, whose outlines are
// quadratic; cubics are here so that any sfnt font draws.)
func (f *flattener) cubeTo(x1, y1, x2, y2, x3, y3 int64) {
	x0, y0 := f.x, f.y
	dev := max(abs64(x0-2*x1+x2), abs64(y0-2*y1+y2), abs64(x1-2*x2+x3), abs64(y1-2*y2+y3))
	n := pieces(2 * dev)
	for i := int64(1); i <= n; i++ {
		j := n - i
		a, b, c, d := j*j*j, 3*j*j*i, 3*j*i*i, i*i*i
		f.lineTo(divRound(a*x0+b*x1+c*x2+d*x3, n*n*n), divRound(a*y0+b*y1+c*y2+d*y3, n*n*n))
	}
}

// layout flattens text set in face f at ppem pixels per em, pen starting at the origin on the
// baseline (y grows down, so ink above the baseline has negative y).
func layout(f *sfnt.Font, text string, ppem int) (outline, error) {
	var (
		buf  sfnt.Buffer
		fl   flattener
		pen  int64
		prev sfnt.GlyphIndex
		size = fixed.Int26_6(ppem * unit)
	)
	fl.o.minX, fl.o.minY = 1<<40, 1<<40
	fl.o.maxX, fl.o.maxY = -1<<40, -1<<40
	for i, r := range text {
		gi, err := f.GlyphIndex(&buf, r)
		if err != nil {
			return outline{}, fmt.Errorf("glyph index of %q: %w", r, err)
		}
		if gi == 0 { // glyph 0 is the font's "missing character" box
			return outline{}, fmt.Errorf("font has no glyph for %q", r)
		}
		if i > 0 {
			// Fonts without kerning data report 0; a missing pair is not an error.
			if k, err := f.Kern(&buf, prev, gi, size, font.HintingNone); err == nil {
				pen += int64(k)
			}
		}
		segs, err := f.LoadGlyph(&buf, gi, size, nil)
		if err != nil {
			return outline{}, fmt.Errorf("load glyph %q: %w", r, err)
		}
		for _, s := range segs {
			a := s.Args
			switch s.Op {
			case sfnt.SegmentOpMoveTo:
				fl.moveTo(pen+int64(a[0].X), int64(a[0].Y))
			case sfnt.SegmentOpLineTo:
				fl.lineTo(pen+int64(a[0].X), int64(a[0].Y))
			case sfnt.SegmentOpQuadTo:
				fl.quadTo(pen+int64(a[0].X), int64(a[0].Y), pen+int64(a[1].X), int64(a[1].Y))
			case sfnt.SegmentOpCubeTo:
				fl.cubeTo(pen+int64(a[0].X), int64(a[0].Y), pen+int64(a[1].X), int64(a[1].Y),
					pen+int64(a[2].X), int64(a[2].Y))
			}
		}
		fl.close()
		adv, err := f.GlyphAdvance(&buf, gi, size, font.HintingNone)
		if err != nil {
			return outline{}, fmt.Errorf("advance of %q: %w", r, err)
		}
		pen += int64(adv)
		prev = gi
	}
	if len(fl.o.edges) == 0 {
		return outline{}, fmt.Errorf("text %q has no ink", text)
	}
	return fl.o, nil
}

// rasterize returns the coverage (0 to 255) of outline o, translated by (dx, dy) units, on a
// w x h pixel grid, row-major.
func rasterize(o outline, dx, dy int64, w, h int) []uint8 {
	counts := make([]int32, w*h)
	type crossing struct {
		x   int64
		dir int32
	}
	var xs []crossing
	for row := range h * subsamples {
		sy := int64(row)*subStep + subStep/2 - dy // sample row, in the outline's coordinates
		xs = xs[:0]
		for _, e := range o.edges {
			// Half-open in y, so a vertex shared by two edges is crossed once.
			var dir int32 = 1
			ya, yb := e.y0, e.y1
			if ya > yb {
				ya, yb, dir = yb, ya, -1
			}
			if sy < ya || sy >= yb {
				continue
			}
			x := e.x0 + (sy-e.y0)*(e.x1-e.x0)/(e.y1-e.y0)
			xs = append(xs, crossing{x + dx, dir})
		}
		// Ties only bound empty spans, so their order cannot change the counts; the second key
		// just makes the order explicit.
		slices.SortFunc(xs, func(a, b crossing) int {
			if c := cmp.Compare(a.x, b.x); c != 0 {
				return c
			}
			return cmp.Compare(a.dir, b.dir)
		})
		var wind int32
		py := row / subsamples
		for k := 0; k+1 < len(xs); k++ {
			wind += xs[k].dir
			if wind == 0 {
				continue
			}
			// Sample columns c sit at x = c*subStep + subStep/2; count those in [xs[k], xs[k+1]).
			c0 := max(floorDiv(xs[k].x-subStep/2+subStep-1, subStep), 0)
			c1 := min(floorDiv(xs[k+1].x-subStep/2+subStep-1, subStep), int64(w*subsamples))
			for c := c0; c < c1; c++ {
				counts[py*w+int(c/subsamples)]++
			}
		}
	}
	cov := make([]uint8, w*h)
	for i, n := range counts {
		cov[i] = uint8((int(n)*255 + fullCover/2) / fullCover)
	}
	return cov
}
