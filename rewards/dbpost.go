package rewards

import (
	"cmp"
	"math"
	"slices"
)

// DB post-processing: PaddleOCR's DBPostProcess (box_type "quad", score_mode "fast") and the
// box filtering and sorting of its TextSystem, on a text probability map.

// DBParams are the post-processing settings, with PaddleOCR's defaults in [DefaultDBParams].
type DBParams struct {
	// Thresh binarises the probability map; BoxThresh is the least mean probability inside a
	// box for it to count as text.
	Thresh, BoxThresh float64
	// UnclipRatio grows each box by area*ratio/perimeter on every side, undoing the shrinking
	// of the text regions DB was trained on.
	UnclipRatio float64
	// MaxCandidates bounds the regions examined per image.
	MaxCandidates int
}

// DefaultDBParams are PaddleOCR's: det_db_thresh 0.3, det_db_box_thresh 0.6,
// det_db_unclip_ratio 1.5, max_candidates 1000.
var DefaultDBParams = DBParams{Thresh: 0.3, BoxThresh: 0.6, UnclipRatio: 1.5, MaxCandidates: 1000}

// minBoxSide is DBPostProcess's min_size: regions whose box is thinner are noise.
const minBoxSide = 3

// dbBoxes finds text boxes in an h x w probability map and returns them in the coordinates of
// the srcH x srcW image the map was computed for, sorted top to bottom, then left to right.
func dbBoxes(prob []float32, h, w, srcH, srcW int, p DBParams) []quad {
	var boxes []quad
	sx, sy := float64(srcW)/float64(w), float64(srcH)/float64(h)
	for _, comp := range components(prob, h, w, float32(p.Thresh), p.MaxCandidates) {
		r := minAreaRect(convexHull(comp))
		if r.shortSide() < minBoxSide {
			continue
		}
		if boxScore(prob, h, w, miniBox(r)) < p.BoxThresh {
			continue
		}
		// Unclip: offsetting a rectangle by d and taking the smallest rectangle around the
		// rounded result (PaddleOCR uses pyclipper and minAreaRect) grows each side by 2d.
		area, perimeter := 4*r.hu*r.hv, 4*(r.hu+r.hv)
		d := area * p.UnclipRatio / perimeter
		r.hu, r.hv = r.hu+d, r.hv+d
		if r.shortSide() < minBoxSide+2 {
			continue
		}
		box := miniBox(r).mapped(func(q point) point {
			return point{
				math.Min(math.Max(math.RoundToEven(q.x*sx), 0), float64(srcW)),
				math.Min(math.Max(math.RoundToEven(q.y*sy), 0), float64(srcH)),
			}
		})
		// TextDetector's filter_tag_det_res: reorder, clip to the image, drop slivers.
		box = clockwise(box).mapped(func(q point) point {
			return point{math.Min(math.Max(q.x, 0), float64(srcW-1)), math.Min(math.Max(q.y, 0), float64(srcH-1))}
		})
		if int(box[0].dist(box[1])) <= minBoxSide || int(box[0].dist(box[3])) <= minBoxSide {
			continue
		}
		boxes = append(boxes, box)
	}
	return sortBoxes(boxes)
}

// components labels the 8-connected regions of prob > thresh in raster order of their first
// pixel (at most limit of them) and returns, for each, the leftmost and rightmost pixel of
// every row it spans: enough points for its convex hull.
func components(prob []float32, h, w int, thresh float32, limit int) [][]point {
	seen := make([]bool, h*w)
	var out [][]point
	var stack, pix []int
	for start, v := range prob {
		if v <= thresh || seen[start] {
			continue
		}
		if len(out) == limit {
			break
		}
		// Flood fill from start, collecting the region's pixels.
		seen[start] = true
		stack, pix = append(stack[:0], start), pix[:0]
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			pix = append(pix, i)
			x, y := i%w, i/w
			for ny := max(y-1, 0); ny <= min(y+1, h-1); ny++ {
				for nx := max(x-1, 0); nx <= min(x+1, w-1); nx++ {
					if j := ny*w + nx; !seen[j] && prob[j] > thresh {
						seen[j] = true
						stack = append(stack, j)
					}
				}
			}
		}
		// The region's extreme pixels per row.
		top, bottom := start/w, start/w
		for _, i := range pix {
			bottom = max(bottom, i/w) // start is the region's first pixel in raster order: its row is the top
		}
		left := make([]int, bottom-top+1)
		right := make([]int, bottom-top+1)
		for r := range left {
			left[r], right[r] = w, -1
		}
		for _, i := range pix {
			r, x := i/w-top, i%w
			left[r], right[r] = min(left[r], x), max(right[r], x)
		}
		pts := make([]point, 0, 2*len(left))
		for r := range left {
			pts = append(pts, pt(left[r], top+r), pt(right[r], top+r))
		}
		out = append(out, pts)
	}
	return out
}

// boxScore is the mean probability of the pixels inside box (DBPostProcess.box_score_fast):
// the box's corners are truncated to integers within its bounding rectangle, and pixels on the
// boundary count as inside, as cv2.fillPoly draws them.
func boxScore(prob []float32, h, w int, box quad) float64 {
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, p := range box {
		xmin, xmax = min(xmin, p.x), max(xmax, p.x)
		ymin, ymax = min(ymin, p.y), max(ymax, p.y)
	}
	clampI := func(v float64, hi int) int { return min(max(int(v), 0), hi-1) }
	x0, x1 := clampI(math.Floor(xmin), w), clampI(math.Ceil(xmax), w)
	y0, y1 := clampI(math.Floor(ymin), h), clampI(math.Ceil(ymax), h)
	local := box.mapped(func(p point) point {
		return point{math.Trunc(p.x - float64(x0)), math.Trunc(p.y - float64(y0))}
	})
	var sum float64
	n := 0
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			if insideConvex(local, pt(x-x0, y-y0)) {
				sum += float64(prob[y*w+x])
				n++
			}
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// sortBoxes orders boxes as PaddleOCR's sorted_boxes does: by the top-left corner's y, then x,
// then, within a line (top-left corners less than 10 pixels apart vertically), left to right.
func sortBoxes(boxes []quad) []quad {
	slices.SortStableFunc(boxes, func(a, b quad) int {
		return cmp.Or(cmp.Compare(a[0].y, b[0].y), cmp.Compare(a[0].x, b[0].x))
	})
	for i := 0; i+1 < len(boxes); i++ {
		for j := i; j >= 0; j-- {
			if math.Abs(boxes[j+1][0].y-boxes[j][0].y) < 10 && boxes[j+1][0].x < boxes[j][0].x {
				boxes[j], boxes[j+1] = boxes[j+1], boxes[j]
			} else {
				break
			}
		}
	}
	return boxes
}
