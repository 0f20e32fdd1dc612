// Package sheet draws contact sheets: pictures in rows with captions, and for FK steering the
// genealogy of the particles, a line from every particle to the particle of the row above that
// it was copied from. It draws with the standard library's image packages, a fixed bitmap font
// and integer line drawing only, so equal inputs give equal pixels on every machine.
package sheet

import (
	"image"
	"image/color"
	"slices"
	"strings"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Cell is one picture with a caption under it.
type Cell struct {
	Image   image.Image
	Caption string
	// Mark draws a thick frame around the cell, e.g. for the output a run selected.
	Mark bool
}

// Row is a line of cells with a label at its left.
type Row struct {
	Label string
	Cells []Cell
	// Parents[k] is, for every row but the first, the index of the cell in the row above that
	// cell k descends from; a line joins them. A nil Parents draws no lines into this row.
	Parents []int
}

// Layout constants, in pixels.
const (
	margin   = 8
	gap      = 12 // between cells of a row
	lineGap  = 40 // between rows, where genealogy lines run
	textH    = LineHeight
	charW    = CharWidth
	minCell  = 96  // small images are enlarged by an integer factor to at least this
	maxCell  = 160 // large images are reduced to this
	titleGap = 6
)

// The metrics of Text's font, basicfont.Face7x13, in pixels.
const (
	CharWidth  = 7
	LineHeight = 13
)

// Palette returns the sheets' line colours, distinct at a glance (matplotlib's tab10 without
// its grey and olive), for drawings that want to look alike.
func Palette() []color.RGBA { return slices.Clone(palette) }

var (
	white = color.RGBA{255, 255, 255, 255}
	black = color.RGBA{0, 0, 0, 255}
	grey  = color.RGBA{128, 128, 128, 255}
	// palette colours lineages by the first-row cell they descend from.
	palette = []color.RGBA{
		{0x1f, 0x77, 0xb4, 255}, {0xd6, 0x27, 0x28, 255}, {0x2c, 0xa0, 0x2c, 255}, {0xff, 0x7f, 0x0e, 255},
		{0x94, 0x67, 0xbd, 255}, {0x8c, 0x56, 0x4b, 255}, {0xe3, 0x77, 0xc2, 255}, {0x17, 0xbe, 0xcf, 255},
	}
)

// cellSize is the side of the square a picture of w x h pixels is drawn in.
func cellSize(rows [][]Cell) int {
	side := 1
	for _, r := range rows {
		for _, c := range r {
			if c.Image != nil {
				b := c.Image.Bounds()
				side = max(side, b.Dx(), b.Dy())
			}
		}
	}
	switch {
	case side < minCell:
		return side * ((minCell + side - 1) / side)
	case side > maxCell:
		return maxCell
	}
	return side
}

// Genealogy draws rows top to bottom under a title: each cell's picture, its caption, and a line
// from each cell to its parent in the row above, coloured by the first-row cell it descends
// from, so a lineage can be followed down the sheet. Rows may have different numbers of cells.
func Genealogy(title string, rows []Row) *image.RGBA {
	cells := make([][]Cell, len(rows))
	labelW := 0
	cols := 0
	for i, r := range rows {
		cells[i] = r.Cells
		labelW = max(labelW, len(r.Label)*charW)
		cols = max(cols, len(r.Cells))
	}
	s := cellSize(cells)
	if labelW > 0 {
		labelW += gap
	}
	rowH := s + 2 + textH + lineGap
	width := 2*margin + labelW + cols*s + max(0, cols-1)*gap
	titleLines := wrap(title, (width-2*margin)/charW, 3)
	top := margin + len(titleLines)*textH + titleGap
	height := top + len(rows)*rowH - lineGap + margin
	img := canvas(width, height)
	for i, line := range titleLines {
		Text(img, margin, margin+i*textH, line, black)
	}

	x := func(k int) int { return margin + labelW + k*(s+gap) }
	y := func(r int) int { return top + r*rowH }
	// roots[r][k] is the first-row cell that cell k of row r descends from.
	roots := make([][]int, len(rows))
	for r, row := range rows {
		roots[r] = make([]int, len(row.Cells))
		for k := range row.Cells {
			roots[r][k] = k
			if r > 0 && row.Parents != nil && k < len(row.Parents) {
				if p := row.Parents[k]; p >= 0 && p < len(roots[r-1]) {
					roots[r][k] = roots[r-1][p]
				}
			}
		}
	}
	for r, row := range rows {
		Text(img, margin, y(r)+(s-textH)/2, row.Label, black)
		for k, c := range row.Cells {
			col := palette[roots[r][k]%len(palette)]
			drawCell(img, x(k), y(r), s, c, col)
			if r == 0 || row.Parents == nil || k >= len(row.Parents) {
				continue
			}
			p := row.Parents[k]
			if p < 0 || p >= len(rows[r-1].Cells) {
				continue
			}
			// From the middle of the parent's caption's bottom to the top of the child.
			x0, y0 := x(p)+s/2, y(r-1)+s+2+textH+2
			x1, y1 := x(k)+s/2, y(r)-3
			Line(img, x0, y0, x1, y1, col)
			Line(img, x0+1, y0, x1+1, y1, col)
		}
	}
	return img
}

// Grid draws cells in rows of cols under a title.
func Grid(title string, cells []Cell, cols int) *image.RGBA {
	cols = max(1, min(cols, len(cells)))
	var rows []Row
	for i := 0; i < len(cells); i += cols {
		rows = append(rows, Row{Cells: cells[i:min(i+cols, len(cells))]})
	}
	return Genealogy(title, rows)
}

func canvas(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.Draw(img, img.Rect, &image.Uniform{white}, image.Point{}, xdraw.Src)
	return img
}

// drawCell draws a picture scaled into an s x s square at (x, y), a frame, and the caption.
func drawCell(img *image.RGBA, x, y, s int, c Cell, frame color.RGBA) {
	dst := image.Rect(x, y, x+s, y+s)
	if c.Image == nil {
		xdraw.Draw(img, dst, &image.Uniform{grey}, image.Point{}, xdraw.Src)
	} else {
		b := c.Image.Bounds()
		// Fit inside the square keeping the aspect ratio; integer enlargement stays sharp.
		w, h := b.Dx(), b.Dy()
		scale := float64(s) / float64(max(w, h))
		fw, fh := int(float64(w)*scale), int(float64(h)*scale)
		r := image.Rect(x+(s-fw)/2, y+(s-fh)/2, x+(s-fw)/2+fw, y+(s-fh)/2+fh)
		var scaler xdraw.Scaler = xdraw.NearestNeighbor
		if scale < 1 {
			scaler = xdraw.ApproxBiLinear
		}
		scaler.Scale(img, r, c.Image, b, xdraw.Src, nil)
	}
	thick := 1
	if c.Mark {
		thick = 3
	}
	for t := 1; t <= thick; t++ {
		rect(img, x-t, y-t, x+s+t-1, y+s+t-1, frame)
	}
	caption := c.Caption
	if n := s / charW; len(caption) > n {
		caption = caption[:max(0, n-1)] + "~"
	}
	Text(img, x+(s-len(caption)*charW)/2, y+s+2, caption, black)
}

func rect(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	Line(img, x0, y0, x1, y0, c)
	Line(img, x0, y1, x1, y1, c)
	Line(img, x0, y0, x0, y1, c)
	Line(img, x1, y0, x1, y1, c)
}

// Line draws a one-pixel line from (x0, y0) to (x1, y1) inclusive with Bresenham's algorithm,
// clipped to the image.
func Line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	Walk(x0, y0, x1, y1, func(x, y int) {
		if (image.Point{x, y}).In(img.Rect) {
			img.SetRGBA(x, y, c)
		}
	})
}

// Walk calls visit with every pixel of the line from (x0, y0) to (x1, y1) inclusive, in order
// from (x0, y0), by Bresenham's algorithm: Line's pixels, for lines drawn otherwise (dashed,
// blended).
func Walk(x0, y0, x1, y1 int, visit func(x, y int)) {
	dx, sx := abs(x1-x0), sign(x1-x0)
	dy, sy := -abs(y1-y0), sign(y1-y0)
	e := dx + dy
	for {
		visit(x0, y0)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// Text draws s with its top-left corner at (x, y) in the 7x13 bitmap font (basicfont.Face7x13:
// 7 pixels a character, 13 a line). Characters outside ASCII are drawn as '?', which the font
// has.
func Text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	s = strings.Map(func(r rune) rune {
		if r < 32 || r > 126 {
			return '?'
		}
		return r
	}, s)
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13,
		Dot: fixed.P(x, y+basicfont.Face7x13.Ascent)}
	d.DrawString(s)
}

// wrap splits s into at most maxLines lines of at most width characters, breaking at spaces
// where it can and marking a cut with '~'.
func wrap(s string, width, maxLines int) []string {
	if s == "" {
		return nil
	}
	width = max(width, 8)
	var lines []string
	for _, para := range strings.Split(s, "\n") {
		for len(para) > width {
			cut := strings.LastIndex(para[:width+1], " ")
			if cut <= 0 {
				cut = width
			}
			lines = append(lines, para[:cut])
			para = strings.TrimLeft(para[cut:], " ")
		}
		lines = append(lines, para)
	}
	if len(lines) > maxLines {
		lines = lines[:maxLines]
		last := lines[maxLines-1]
		if len(last)+1 > width {
			last = last[:width-1]
		}
		lines[maxLines-1] = last + "~"
	}
	return lines
}
