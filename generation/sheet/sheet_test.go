package sheet

import (
	"bytes"
	"image"
	"image/color"
	"testing"
)

func TestLineCoversEveryStepAndBothEnds(t *testing.T) {
	red := color.RGBA{255, 0, 0, 255}
	for _, c := range [][4]int{{2, 3, 17, 9}, {17, 9, 2, 3}, {5, 1, 5, 18}, {1, 18, 19, 0}, {4, 4, 4, 4}} {
		img := image.NewRGBA(image.Rect(0, 0, 20, 20))
		Line(img, c[0], c[1], c[2], c[3], red)
		n := 0
		for i := 3; i < len(img.Pix); i += 4 {
			if img.Pix[i] != 0 {
				n++
			}
		}
		want := max(abs(c[2]-c[0]), abs(c[3]-c[1])) + 1
		if n != want {
			t.Errorf("line %v set %d pixels, want %d", c, n, want)
		}
		if img.RGBAAt(c[0], c[1]) != red || img.RGBAAt(c[2], c[3]) != red {
			t.Errorf("line %v misses an end", c)
		}
	}
	// Clipped, not a panic.
	Line(image.NewRGBA(image.Rect(0, 0, 4, 4)), -10, -10, 30, 30, red)
}

func solid(c color.NRGBA) image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, 32, 32))
	for i := 0; i < len(img.Pix); i += 4 {
		copy(img.Pix[i:], []byte{c.R, c.G, c.B, c.A})
	}
	return img
}

func TestGenealogyDrawsLinesToParents(t *testing.T) {
	pics := []image.Image{solid(color.NRGBA{200, 0, 0, 255}), solid(color.NRGBA{0, 200, 0, 255}), solid(color.NRGBA{0, 0, 200, 255})}
	row := func(label string, parents []int) Row {
		r := Row{Label: label, Parents: parents}
		for _, p := range pics {
			r.Cells = append(r.Cells, Cell{Image: p, Caption: "r=0.50"})
		}
		return r
	}
	rows := []Row{row("step 5", nil), row("step 10", []int{0, 0, 2})}
	img := Genealogy(`a red "A"`, rows)
	again := Genealogy(`a red "A"`, rows)
	if !bytes.Equal(img.Pix, again.Pix) {
		t.Fatal("two drawings of one sheet differ")
	}
	s := cellSize([][]Cell{rows[0].Cells})
	if s != 96 {
		t.Fatalf("32-pixel images get cells of %d, want 96 (3x)", s)
	}
	labelW := len("step 10")*charW + gap
	x := func(k int) int { return margin + labelW + k*(s+gap) + s/2 }
	top := margin + textH + titleGap
	rowH := s + 2 + textH + lineGap
	// Halfway down the gap between the rows: the line from parent 0 to child 1 passes midway
	// between their centres, in root 0's colour; parent 1 has no child, so nothing is drawn
	// straight below it.
	midY := top + s + 2 + textH + lineGap/2
	at := func(x, y int) color.RGBA { return img.RGBAAt(x, y) }
	found := false
	for dx := -2; dx <= 2; dx++ {
		if at((x(0)+x(1))/2+dx, midY) == palette[0] {
			found = true
		}
	}
	if !found {
		t.Error("no line from particle 0 to its child 1")
	}
	if at(x(1), midY) != white {
		t.Errorf("a line below particle 1, which has no child: %v", at(x(1), midY))
	}
	if at(x(2), midY) != palette[2] {
		t.Errorf("no straight line from particle 2 to itself: %v", at(x(2), midY))
	}
	// The pictures are enlarged into the cells, and the second row is where it should be.
	if at(x(0), top+s/2) != (color.RGBA{200, 0, 0, 255}) || at(x(2), top+rowH+s/2) != (color.RGBA{0, 0, 200, 255}) {
		t.Error("pictures are not drawn in their cells")
	}
	// Captions are drawn under the cells.
	dark := 0
	for y := top + s + 2; y < top+s+2+textH; y++ {
		for xx := x(0) - s/2; xx < x(0)+s/2; xx++ {
			if at(xx, y) == black {
				dark++
			}
		}
	}
	if dark == 0 {
		t.Error("no caption under the first cell")
	}
}

func TestGridShape(t *testing.T) {
	cells := make([]Cell, 5)
	for i := range cells {
		cells[i] = Cell{Image: solid(color.NRGBA{10, 10, 10, 255}), Caption: "seed 1"}
	}
	img := Grid("", cells, 3)
	s := 96
	wantW := 2*margin + 3*s + 2*gap
	wantH := margin + titleGap + 2*(s+2+textH) + lineGap + margin
	if img.Rect.Dx() != wantW || img.Rect.Dy() != wantH {
		t.Errorf("grid of 5 in rows of 3 is %v, want %dx%d", img.Rect.Size(), wantW, wantH)
	}
}

func TestWrap(t *testing.T) {
	got := wrap("one two three four five six", 10, 2)
	if len(got) != 2 || got[0] != "one two" || got[1] != "three fou~" {
		t.Errorf("wrap = %q", got)
	}
}
