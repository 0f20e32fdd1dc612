package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/generation/sheet"
	"github.com/fksteer/fksteer/sampler"
)

// The plot's size and layout, in pixels (sheet.Text's 7x13 characters).
const (
	PlotWidth, PlotHeight = 900, 560

	plotLeft, plotRight = 56, 720 // the axes' box; the legend lies right of it
	plotTop, plotBottom = 56, 500
	charW, lineH        = sheet.CharWidth, sheet.LineHeight
	// bandAlpha is the opacity of the 95 % bands, light enough for several to overlap.
	bandAlpha = 0.14
)

var (
	black     = color.RGBA{0, 0, 0, 255}
	gridGrey  = color.RGBA{225, 225, 225, 255}
	labelGrey = color.RGBA{90, 90, 90, 255}
	// methodColors holds a colour per method, in sampler.Methods order: grey for base, then
	// the contact sheets' palette.
	methodColors = append([]color.RGBA{{0x7f, 0x7f, 0x7f, 255}}, sheet.Palette()...)
)

// PlotColor is the colour of method m's lines in the plot: fixed per method, so plots of
// different studies compare at a glance.
func PlotColor(m sampler.Method) color.RGBA {
	return methodColors[max(0, methodOrder(m))%len(methodColors)]
}

// Plot draws success against NFE per image, PlotWidth x PlotHeight: x is the NFE the cells
// spent per image on a log2 scale, ticked at the budgets; y is the success rate, 0 to 100 %.
// Each method has one colour: a solid line for the classifier's success, a dashed one for the
// reader's, each in a translucent band of its 95 % Wilson intervals; base, at 1x only, is a
// point with its interval.
func (t *SteerTable) Plot() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, PlotWidth, PlotHeight))
	draw.Draw(img, img.Rect, image.White, image.Point{}, draw.Src)
	var digits []string
	for _, d := range t.Digits {
		digits = append(digits, fmt.Sprint(d))
	}
	sheet.Text(img, plotLeft, 6, fmt.Sprintf("%s: success against NFE per image (digits %s pooled, %d runs a point)",
		t.Model, strings.Join(digits, ","), t.Runs*len(t.Digits)), black)
	sheet.Text(img, plotLeft, 6+lineH, "solid: classifier (the reward), dashed: k-NN reader; bands: 95% Wilson intervals", labelGrey)

	// The x range: the ticks (the budgets' NFE) and every point, half a doubling beyond.
	var mults []int
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range t.Rows {
		if !slices.Contains(mults, r.Multiple) {
			mults = append(mults, r.Multiple)
		}
		for _, v := range []float64{float64(r.Multiple * t.Unit), r.Pooled.NFE} {
			if v > 0 {
				lo, hi = min(lo, math.Log2(v)), max(hi, math.Log2(v))
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	lo, hi = lo-0.5, hi+0.5
	x := func(nfe float64) int {
		return plotLeft + int(math.Round((math.Log2(max(nfe, 1e-9))-lo)/(hi-lo)*float64(plotRight-plotLeft)))
	}
	y := func(p float64) int { return plotBottom - int(math.Round(p*float64(plotBottom-plotTop))) }

	// Grid, axes and their labels.
	for p := 0; p <= 100; p += 20 {
		yy := y(float64(p) / 100)
		sheet.Line(img, plotLeft, yy, plotRight, yy, gridGrey)
		label := fmt.Sprintf("%d%%", p)
		sheet.Text(img, plotLeft-6-len(label)*charW, yy-lineH/2, label, black)
	}
	slices.Sort(mults)
	for _, m := range mults {
		nfe := float64(m * t.Unit)
		xx := x(nfe)
		sheet.Line(img, xx, plotTop, xx, plotBottom, gridGrey)
		for i, label := range []string{fmt.Sprintf("%dx", m), fmt.Sprint(m * t.Unit)} {
			sheet.Text(img, xx-len(label)*charW/2, plotBottom+6+i*lineH, label, black)
		}
	}
	rect := image.Rect(plotLeft, plotTop, plotRight+1, plotBottom+1)
	for _, l := range [][4]int{{plotLeft, plotTop, plotRight, plotTop}, {plotLeft, plotBottom, plotRight, plotBottom},
		{plotLeft, plotTop, plotLeft, plotBottom}, {plotRight, plotTop, plotRight, plotBottom}} {
		sheet.Line(img, l[0], l[1], l[2], l[3], black)
	}
	sheet.Text(img, plotLeft, plotTop-lineH-2, "success", black)
	axis := fmt.Sprintf("NFE per image (log scale; ticks at the budgets, as multiples of one base image's %d NFE)", t.Unit)
	sheet.Text(img, (plotLeft+plotRight-len(axis)*charW)/2, plotBottom+8+2*lineH, axis, black)

	// One series per method: bands first, then lines and markers over them.
	var methods []sampler.Method
	for _, r := range t.Rows {
		if !slices.Contains(methods, r.Method) {
			methods = append(methods, r.Method)
		}
	}
	series := func(m sampler.Method) []Row {
		var rows []Row
		for _, r := range t.Rows {
			if r.Method == m {
				rows = append(rows, r)
			}
		}
		slices.SortFunc(rows, func(a, b Row) int { return a.Multiple - b.Multiple })
		return rows
	}
	judges := []func(Tally) Rate{func(t Tally) Rate { return t.Classifier }, func(t Tally) Rate { return t.Reader }}
	for _, m := range methods {
		rows, c := series(m), PlotColor(m)
		for _, judge := range judges {
			for i, r := range rows {
				l0, h0 := judge(r.Pooled).Wilson()
				x0 := x(r.Pooled.NFE)
				if len(rows) == 1 {
					fillBand(img, rect, x0-4, x0+4, y(l0), y(h0), y(l0), y(h0), c)
				}
				if i == 0 {
					continue
				}
				p := rows[i-1].Pooled
				l1, h1 := judge(p).Wilson()
				fillBand(img, rect, x(p.NFE), x0, y(l1), y(h1), y(l0), y(h0), c)
			}
		}
	}
	for _, m := range methods {
		rows, c := series(m), PlotColor(m)
		for j, judge := range judges {
			for i, r := range rows {
				xx, yy := x(r.Pooled.NFE), y(judge(r.Pooled).P())
				marker(img, xx, yy, c, j == 0)
				if i > 0 {
					p := rows[i-1].Pooled
					thickLine(img, rect, x(p.NFE), y(judge(p).P()), xx, yy, c, j == 1)
				}
			}
		}
	}

	// The legend: a line of each method's colour and its name, then the two line styles.
	ly := plotTop
	for _, m := range methods {
		c := PlotColor(m)
		thickLine(img, img.Rect, plotRight+16, ly+lineH/2, plotRight+40, ly+lineH/2, c, false)
		sheet.Text(img, plotRight+46, ly, methodName(m, m.Optimiser()), black)
		ly += lineH + 6
	}
	ly += lineH
	for j, label := range []string{"classifier", "k-NN reader"} {
		thickLine(img, img.Rect, plotRight+16, ly+lineH/2, plotRight+40, ly+lineH/2, black, j == 1)
		sheet.Text(img, plotRight+46, ly, label, black)
		ly += lineH + 6
	}
	sheet.Text(img, plotRight+16, ly+lineH, "(opt): optimiser", labelGrey)
	return img
}

// WritePlot writes Plot as a PNG.
func (t *SteerTable) WritePlot(w io.Writer) error {
	return png.Encode(w, t.Plot())
}

// fillBand shades, within clip, the band between columns x0 and x1 whose lower and upper edges
// run straight from (x0, lo0) to (x1, lo1) and from (x0, hi0) to (x1, hi1) (y grows
// downward, so lo >= hi), blending c over what is there.
func fillBand(img *image.RGBA, clip image.Rectangle, x0, x1, lo0, hi0, lo1, hi1 int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		f := 0.0
		if x1 > x0 {
			f = float64(x-x0) / float64(x1-x0)
		}
		lo := int(math.Round(float64(lo0) + f*float64(lo1-lo0)))
		hi := int(math.Round(float64(hi0) + f*float64(hi1-hi0)))
		for y := hi; y <= lo; y++ {
			blend(img, clip, x, y, c, bandAlpha)
		}
	}
}

// blend mixes c into pixel (x, y) with opacity a, if the pixel lies within clip.
func blend(img *image.RGBA, clip image.Rectangle, x, y int, c color.RGBA, a float64) {
	if !(image.Point{x, y}).In(clip) {
		return
	}
	p := img.RGBAAt(x, y)
	mix := func(dst, src uint8) uint8 { return uint8(math.Round(float64(dst)*(1-a) + float64(src)*a)) }
	img.SetRGBA(x, y, color.RGBA{mix(p.R, c.R), mix(p.G, c.G), mix(p.B, c.B), 255})
}

// thickLine draws a line two pixels thick within clip, dashed (6 on, 4 off) if asked.
func thickLine(img *image.RGBA, clip image.Rectangle, x0, y0, x1, y1 int, c color.RGBA, dashed bool) {
	n := 0
	sheet.Walk(x0, y0, x1, y1, func(x, y int) {
		on := !dashed || n%10 < 6
		n++
		if !on {
			return
		}
		for _, p := range []image.Point{{x, y}, {x, y + 1}} {
			if p.In(clip) {
				img.SetRGBA(p.X, p.Y, c)
			}
		}
	})
}

// marker draws a 5x5 square at (x, y): filled, or an outline.
func marker(img *image.RGBA, x, y int, c color.RGBA, filled bool) {
	for dy := -2; dy <= 2; dy++ {
		for dx := -2; dx <= 2; dx++ {
			if filled || dx == -2 || dx == 2 || dy == -2 || dy == 2 {
				img.SetRGBA(x+dx, y+dy, c)
			}
		}
	}
}
