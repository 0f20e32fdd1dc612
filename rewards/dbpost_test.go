package rewards

import (
	"math"
	"os"
	"testing"
)

// fillRect sets prob to v on pixels x0..x1, y0..y1 (inclusive) of a w-wide map.
func fillRect(prob []float32, w, x0, y0, x1, y1 int, v float32) {
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			prob[y*w+x] = v
		}
	}
}

func near(a, b quad, tol float64) bool {
	for i := range a {
		if math.Abs(a[i].x-b[i].x) > tol || math.Abs(a[i].y-b[i].y) > tol {
			return false
		}
	}
	return true
}

// TestDBBoxesAxisAligned works one box out by hand. The region is pixels x 10..49, y 20..29:
// its minimum-area rectangle (through the pixel centres) is 39 x 9 with centre (29.5, 24.5).
// Unclip distance d = area*1.5/perimeter = 351*1.5/96 = 5.484375, so the box grows to
// 49.96875 x 19.96875: x 4.515625..54.484375, y 14.515625..34.484375, rounded to 5, 54, 15, 34.
func TestDBBoxesAxisAligned(t *testing.T) {
	const h, w = 64, 96
	prob := make([]float32, h*w)
	fillRect(prob, w, 10, 20, 49, 29, 0.9)
	boxes := dbBoxes(prob, h, w, h, w, DefaultDBParams)
	want := quad{{5, 15}, {54, 15}, {54, 34}, {5, 34}}
	if len(boxes) != 1 || !near(boxes[0], want, 0) {
		t.Fatalf("boxes %v, want [%v]", boxes, want)
	}
	// The same map computed for an image twice the size: coordinates double before rounding.
	boxes = dbBoxes(prob, h, w, 2*h, 2*w, DefaultDBParams)
	want = quad{{9, 29}, {109, 29}, {109, 69}, {9, 69}}
	if len(boxes) != 1 || !near(boxes[0], want, 0) {
		t.Fatalf("scaled boxes %v, want [%v]", boxes, want)
	}
}

// TestDBBoxesFilters: a region above the binarisation threshold (0.3) whose mean probability is
// below the box threshold (0.6) is no text; nor is a region thinner than 3 pixels; nor noise
// below the threshold.
func TestDBBoxesFilters(t *testing.T) {
	const h, w = 64, 96
	prob := make([]float32, h*w)
	fillRect(prob, w, 10, 10, 60, 20, 0.5)  // faint: binarised, but mean 0.5 < 0.6
	fillRect(prob, w, 10, 40, 60, 41, 0.95) // two pixels tall
	fillRect(prob, w, 70, 40, 90, 60, 0.29) // below the threshold
	if boxes := dbBoxes(prob, h, w, h, w, DefaultDBParams); len(boxes) != 0 {
		t.Errorf("found %v, want nothing", boxes)
	}
	p := DefaultDBParams
	p.BoxThresh = 0.4
	if boxes := dbBoxes(prob, h, w, h, w, p); len(boxes) != 1 {
		t.Errorf("with box-thresh 0.4 the faint region is text: found %v", boxes)
	}
}

// TestDBBoxesRotated: a region drawn along a tilted line gets a tilted box of the line's
// length; the box score uses only the pixels inside the rotated box.
func TestDBBoxesRotated(t *testing.T) {
	const h, w = 128, 128
	prob := make([]float32, h*w)
	// A band 8 pixels thick along the direction (cos 20°, sin 20°), 80 pixels long.
	ang := 20 * math.Pi / 180
	u, v := point{math.Cos(ang), math.Sin(ang)}, point{-math.Sin(ang), math.Cos(ang)}
	c := point{64, 64}
	for y := range h {
		for x := range w {
			d := pt(x, y).sub(c)
			if math.Abs(d.dot(u)) <= 40 && math.Abs(d.dot(v)) <= 4 {
				prob[y*w+x] = 1
			}
		}
	}
	boxes := dbBoxes(prob, h, w, h, w, DefaultDBParams)
	if len(boxes) != 1 {
		t.Fatalf("found %d boxes", len(boxes))
	}
	b := boxes[0]
	dir := b[1].sub(b[0])
	gotAng := math.Atan2(dir.y, dir.x) * 180 / math.Pi
	// Pixel centres within the band span about 80 x 8; unclipped by d = 80*8*1.5/176 ≈ 5.45
	// that is about 91 x 19 (rounding corners to whole pixels moves them by up to half a pixel).
	if math.Abs(gotAng-20) > 2 || math.Abs(b.width()-91) > 2.5 || math.Abs(b.height()-19) > 2.5 {
		t.Errorf("box %v: angle %.1f°, %.1f x %.1f; want about 20°, 91 x 19", b, gotAng, b.width(), b.height())
	}
}

// TestSortBoxes: boxes sort top to bottom, and boxes whose tops are within 10 pixels read left
// to right, as PaddleOCR's sorted_boxes orders them.
func TestSortBoxes(t *testing.T) {
	box := func(x, y float64) quad { return quad{{x, y}, {x + 10, y}, {x + 10, y + 5}, {x, y + 5}} }
	got := sortBoxes([]quad{box(50, 12), box(0, 100), box(10, 15), box(5, 8)})
	want := []quad{box(5, 8), box(10, 15), box(50, 12), box(0, 100)}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
}

func TestMinAreaRect(t *testing.T) {
	// A rectangle 30 x 10 turned by 30 degrees: the hull of its corners gives it back.
	ang := math.Pi / 6
	u, v := point{math.Cos(ang), math.Sin(ang)}, point{-math.Sin(ang), math.Cos(ang)}
	c := point{50, 40}
	var pts []point
	for _, s := range [][2]float64{{-15, -5}, {15, -5}, {15, 5}, {-15, 5}, {0, 0}, {3, 2}} {
		pts = append(pts, c.add(u.scale(s[0])).add(v.scale(s[1])))
	}
	r := minAreaRect(convexHull(pts))
	if math.Abs(4*r.hu*r.hv-300) > 1e-9 || math.Abs(r.shortSide()-10) > 1e-9 || r.c.dist(c) > 1e-9 {
		t.Errorf("rect %+v: area %g, short side %g; want 300 and 10 around %v", r, 4*r.hu*r.hv, r.shortSide(), c)
	}
	if r := minAreaRect(convexHull([]point{{1, 1}, {5, 1}, {3, 1}})); r.shortSide() != 0 {
		t.Errorf("collinear points: short side %g, want 0", r.shortSide())
	}
}

func TestClockwise(t *testing.T) {
	in := quad{{10, 20}, {0, 0}, {0, 20}, {10, 0}} // bottom-right, top-left, bottom-left, top-right
	want := quad{{0, 0}, {10, 0}, {10, 20}, {0, 20}}
	if got := clockwise(in); got != want {
		t.Errorf("clockwise(%v) = %v, want %v", in, got, want)
	}
}

func TestDetSize(t *testing.T) {
	for _, tc := range []struct {
		h, w, limit int
		typ         string
		rh, rw      int
	}{
		{132, 709, 960, "max", 128, 704}, // en.jpg: no scaling, sides rounded to multiples of 32
		{2000, 1000, 960, "max", 960, 480},
		{30, 700, 960, "max", 32, 704},
		{100, 200, 320, "min", 320, 640},
		{8, 8, 960, "max", 32, 32},
	} {
		if rh, rw := detSize(tc.h, tc.w, tc.limit, tc.typ); rh != tc.rh || rw != tc.rw {
			t.Errorf("detSize(%d, %d, %d, %s) = %d x %d, want %d x %d", tc.h, tc.w, tc.limit, tc.typ, rh, rw, tc.rh, tc.rw)
		}
	}
}

// TestCTCGreedy: repeats merge, blanks separate genuine doubles, and the score is the mean
// probability of the kept steps.
func TestCTCGreedy(t *testing.T) {
	chars := []string{"", "a", "b", " "}
	steps := [][]float32{
		{0.1, 0.8, 0.1, 0}, // a
		{0.1, 0.6, 0.3, 0}, // a (repeat: merged)
		{0.9, 0.1, 0, 0},   // blank
		{0.2, 0.7, 0.1, 0}, // a (after a blank: kept)
		{0, 0, 0.1, 0.9},   // space
		{0, 0.1, 0.5, 0.4}, // b
	}
	var probs []float32
	for _, s := range steps {
		probs = append(probs, s...)
	}
	got := ctcGreedy(probs, len(steps), 4, chars)
	if got.text != "aa b" || math.Abs(got.score-(0.8+0.7+0.9+0.5)/4) > 1e-6 {
		t.Errorf("decoded %+v, want \"aa b\" with score %g", got, (0.8+0.7+0.9+0.5)/4)
	}
}

// TestNewCropTurnsTallBoxes: a box at least 1.5 times taller than wide is read turned a quarter
// counter-clockwise, as np.rot90 turns PaddleOCR's crop.
func TestNewCropTurnsTallBoxes(t *testing.T) {
	c := newCrop(0, quad{{0, 0}, {10, 0}, {10, 40}, {0, 40}})
	if c.w != 40 || c.h != 10 || c.q[0] != (point{10, 0}) {
		t.Errorf("crop %+v: want 40 x 10 starting at the top-right corner", c)
	}
	if c := newCrop(0, quad{{0, 0}, {40, 0}, {40, 10}, {0, 10}}); c.w != 40 || c.h != 10 || c.q[0] != (point{0, 0}) {
		t.Errorf("wide crop %+v changed", c)
	}
}

func writeFile(path string, data []byte) error { return os.WriteFile(path, data, 0o644) }
