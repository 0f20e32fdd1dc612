package rewards

import (
	"math"
	"os"
	"slices"
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
// its minimum-area rectangle (through the pixel centres) is 39 x 9 with corners (10, 20) and
// (49, 29). Unclip distance d = area*1.5/perimeter = 351*1.5/96 = 5.484375; pyclipper moves
// each side out by d and rounds to whole pixels: x 4.52 -> 5 and 54.48 -> 54, y 14.52 -> 15 and
// 34.48 -> 34 (the rounded corners stay inside that rectangle).
func TestDBBoxesAxisAligned(t *testing.T) {
	const h, w = 64, 96
	prob := make([]float32, h*w)
	fillRect(prob, w, 10, 20, 49, 29, 0.9)
	boxes := dbBoxes(prob, h, w, h, w, DefaultDBParams)
	want := quad{{5, 15}, {54, 15}, {54, 34}, {5, 34}}
	if len(boxes) != 1 || !near(boxes[0], want, 0) {
		t.Fatalf("boxes %v, want [%v]", boxes, want)
	}
	// The same map computed for an image twice the size: PaddleOCR scales the unclipped box's
	// whole-pixel corners (5 -> 10, 54 -> 108, 15 -> 30, 34 -> 68).
	boxes = dbBoxes(prob, h, w, 2*h, 2*w, DefaultDBParams)
	want = quad{{10, 30}, {108, 30}, {108, 68}, {10, 68}}
	if len(boxes) != 1 || !near(boxes[0], want, 0) {
		t.Fatalf("scaled boxes %v, want [%v]", boxes, want)
	}
}

// TestDBBoxesHole: cv2.findContours(RETR_LIST) also returns the contour of a hole, and
// PaddleOCR scores it like any other region. A 3 x 3 hole at x 40..42, y 28..30 in a region of
// probability 1 has the contour of the 12 region pixels 4-adjacent to it, whose smallest
// rectangle is x 39..43, y 27..31 (4 x 4); the rectangle's 25 pixels hold 16 of probability
// 1 (score 0.64 >= 0.6); unclipped by d = 16*1.5/16 = 1.5 and rounded half away from zero,
// it becomes x 38..45, y 26..33.
func TestDBBoxesHole(t *testing.T) {
	const h, w = 64, 96
	prob := make([]float32, h*w)
	fillRect(prob, w, 10, 10, 80, 50, 1)
	fillRect(prob, w, 40, 28, 42, 30, 0)
	boxes := dbBoxes(prob, h, w, h, w, DefaultDBParams)
	want := quad{{38, 26}, {45, 26}, {45, 33}, {38, 33}}
	if len(boxes) != 2 || !near(boxes[1], want, 0) {
		t.Fatalf("boxes %v, want the region's and the hole's %v", boxes, want)
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

// TestMinAreaRect checks cv2.minAreaRect's rectangle on point sets whose answers OpenCV 4.6
// gave (as corner sets; OpenCV may name the same rectangle by either pair of sides).
func TestMinAreaRect(t *testing.T) {
	for _, tc := range []struct {
		pts  []point
		want [4]point
		side float32
	}{
		// A contour of a 5 x 4 block of pixels: ((2, 1.5), (3, 4), 90) in OpenCV's terms.
		{[]point{{0, 0}, {0, 3}, {4, 3}, {4, 0}}, [4]point{{0, 0}, {4, 0}, {4, 3}, {0, 3}}, 3},
		// Seven points of a tilted blob: ((30.32946, 29.285477), (57.15828, 39.15118), 3.5035315).
		{[]point{{58, 45}, {32, 49}, {4, 40}, {3, 8}, {52, 11}, {30, 30}}, [4]point{{3, 8}, {60.051453, 11.492947}, {57.65892, 50.570953}, {0.60746765, 47.078007}}, 39.15118},
	} {
		r := minAreaRect(tc.pts)
		got := r.points()
		for _, w := range tc.want {
			ok := false
			for _, g := range got {
				ok = ok || math.Abs(g.x-w.x) < 1e-3 && math.Abs(g.y-w.y) < 1e-3
			}
			if !ok {
				t.Errorf("minAreaRect(%v) corners %v, want %v", tc.pts, got, tc.want)
				break
			}
		}
		if math.Abs(float64(r.shortSide()-tc.side)) > 1e-4 {
			t.Errorf("minAreaRect(%v) short side %g, want %g", tc.pts, r.shortSide(), tc.side)
		}
	}
}

// TestOffsetRound compares the unclip offset with pyclipper's (PyclipperOffset, JT_ROUND,
// ET_CLOSEDPOLYGON) on a box with fractional corners, which pyclipper truncates first: the
// box becomes (0, 0)-(10, 5), and its offset by 2 is the polygon below (up to collinear
// points, which Clipper's final union drops and no hull needs).
func TestOffsetRound(t *testing.T) {
	box := []point{{0.7, 0.7}, {10.7, 0.7}, {10.7, 5.7}, {0.7, 5.7}}
	got := convexHull(offsetRound(box, 2))
	want := convexHull([]point{{12, -1}, {12, 5}, {11, 7}, {0, 7}, {-2, 6}, {-2, 0}, {-1, -2}, {10, -2}})
	if !slices.Equal(got, want) {
		t.Errorf("offset hull %v, want %v", got, want)
	}
}

// TestFillConvexMask: the pixels cv2.fillPoly paints for a tilted box, as OpenCV 4.6 paints
// them (outline included).
func TestFillConvexMask(t *testing.T) {
	m := fillConvexMask([4][2]int{{0, 3}, {6, 0}, {8, 4}, {2, 7}}, 8, 9)
	want := []string{
		"000000100",
		"000011100",
		"001111110",
		"111111110",
		"111111111",
		"011111110",
		"011111000",
		"001100000",
	}
	for y, row := range want {
		got := make([]byte, len(row))
		for x := range got {
			got[x] = '0'
			if m[y*9+x] {
				got[x] = '1'
			}
		}
		if string(got) != row {
			t.Errorf("row %d: %s, want %s", y, got, row)
		}
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

func writeFile(path string, data []byte) error { return os.WriteFile(path, data, 0o644) }
