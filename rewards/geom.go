package rewards

import (
	"cmp"
	"math"
	"slices"
)

// Plane geometry for text detection: convex hulls, minimum-area rectangles and quadrilaterals,
// in pixel coordinates (x right, y down; a pixel's index is its centre).

type point struct{ x, y float64 }

func pt(x, y int) point                { return point{float64(x), float64(y)} }
func (p point) add(q point) point      { return point{p.x + q.x, p.y + q.y} }
func (p point) sub(q point) point      { return point{p.x - q.x, p.y - q.y} }
func (p point) scale(s float64) point  { return point{p.x * s, p.y * s} }
func (p point) dot(q point) float64    { return p.x*q.x + p.y*q.y }
func (p point) cross(q point) float64  { return p.x*q.y - p.y*q.x }
func (p point) dist(q point) float64   { return math.Hypot(p.x-q.x, p.y-q.y) }
func (p point) unit() point            { return p.scale(1 / math.Hypot(p.x, p.y)) }
func (p point) rot90() point           { return point{-p.y, p.x} }
func (p point) eq(q point) bool        { return p == q }
func lerp(a, b point, t float64) point { return a.add(b.sub(a).scale(t)) }

// cross3 is the cross product of oa and ob: positive when o, a, b turn counter-clockwise
// (clockwise on screen, y pointing down).
func cross3(o, a, b point) float64 { return a.sub(o).cross(b.sub(o)) }

func pointCmp(a, b point) int { return cmp.Or(cmp.Compare(a.x, b.x), cmp.Compare(a.y, b.y)) }

// quad is a quadrilateral: top-left, top-right, bottom-right, bottom-left.
type quad [4]point

// width and height are the longer of the two horizontal and of the two vertical sides.
func (q quad) width() float64  { return max(q[0].dist(q[1]), q[2].dist(q[3])) }
func (q quad) height() float64 { return max(q[0].dist(q[3]), q[1].dist(q[2])) }

// rotated is the quadrilateral read a quarter turn counter-clockwise: its top-right corner
// becomes the top-left.
func (q quad) rotated() quad { return quad{q[1], q[2], q[3], q[0]} }

// at maps (s, t) in [0, 1]^2 bilinearly onto the quadrilateral: (0, 0) is the top-left
// corner, (1, 1) the bottom-right.
func (q quad) at(s, t float64) point { return lerp(lerp(q[0], q[1], s), lerp(q[3], q[2], s), t) }

// mapped applies f to every corner.
func (q quad) mapped(f func(point) point) quad { return quad{f(q[0]), f(q[1]), f(q[2]), f(q[3])} }

// convexHull returns the convex hull of pts counter-clockwise (in y-down coordinates,
// clockwise on screen), without collinear points (Andrew's monotone chain). pts is sorted in
// place.
func convexHull(pts []point) []point {
	slices.SortFunc(pts, pointCmp)
	pts = slices.CompactFunc(pts, point.eq)
	if len(pts) < 3 {
		return slices.Clone(pts)
	}
	hull := make([]point, 0, 2*len(pts))
	for pass := 0; pass < 2; pass++ {
		start := len(hull)
		for _, p := range pts {
			for len(hull) >= start+2 && cross3(hull[len(hull)-2], hull[len(hull)-1], p) <= 0 {
				hull = hull[:len(hull)-1]
			}
			hull = append(hull, p)
		}
		hull = hull[:len(hull)-1] // the last point starts the other chain
		slices.Reverse(pts)
	}
	return hull
}

// rect is a rotated rectangle: centre c, unit axes u and v (v = u rotated by 90 degrees), and
// half-extents hu along u and hv along v.
type rect struct {
	c      point
	u, v   point
	hu, hv float64
}

// corners returns the rectangle's corners in order around it.
func (r rect) corners() [4]point {
	a, b := r.u.scale(r.hu), r.v.scale(r.hv)
	return [4]point{r.c.sub(a).sub(b), r.c.add(a).sub(b), r.c.add(a).add(b), r.c.sub(a).add(b)}
}

// shortSide is the rectangle's shorter side (cv2.minAreaRect's min(size)).
func (r rect) shortSide() float64 { return 2 * min(r.hu, r.hv) }

// minAreaRect returns the smallest-area rectangle enclosing a convex hull, whose sides are, as
// the rotating-calipers argument shows, parallel to one of the hull's edges. A hull of one or two
// points gives a degenerate rectangle of zero width.
func minAreaRect(hull []point) rect {
	switch len(hull) {
	case 0:
		return rect{u: point{1, 0}, v: point{0, 1}}
	case 1:
		return rect{c: hull[0], u: point{1, 0}, v: point{0, 1}}
	}
	best, bestArea := rect{}, math.Inf(1)
	for i := range hull {
		e := hull[(i+1)%len(hull)].sub(hull[i])
		if e.x == 0 && e.y == 0 {
			continue
		}
		u := e.unit()
		v := u.rot90()
		minU, maxU, minV, maxV := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
		for _, p := range hull {
			pu, pv := p.dot(u), p.dot(v)
			minU, maxU = min(minU, pu), max(maxU, pu)
			minV, maxV = min(minV, pv), max(maxV, pv)
		}
		if area := (maxU - minU) * (maxV - minV); area < bestArea {
			c := u.scale((minU + maxU) / 2).add(v.scale((minV + maxV) / 2))
			best, bestArea = rect{c: c, u: u, v: v, hu: (maxU - minU) / 2, hv: (maxV - minV) / 2}, area
		}
	}
	return best
}

// miniBox orders a rectangle's corners as PaddleOCR's get_mini_boxes does: sorted by x, the
// left pair gives top-left and bottom-left (by y), the right pair top-right and bottom-right.
func miniBox(r rect) quad {
	p := r.corners()
	slices.SortStableFunc(p[:], func(a, b point) int { return cmp.Compare(a.x, b.x) })
	var q quad
	if p[1].y > p[0].y {
		q[0], q[3] = p[0], p[1]
	} else {
		q[0], q[3] = p[1], p[0]
	}
	if p[3].y > p[2].y {
		q[1], q[2] = p[2], p[3]
	} else {
		q[1], q[2] = p[3], p[2]
	}
	return q
}

// clockwise orders four points as PaddleOCR's order_points_clockwise does: top-left has the
// smallest x+y, bottom-right the largest; of the other two, top-right has the smaller y-x.
func clockwise(q quad) quad {
	lo, hi := 0, 0
	for i, p := range q {
		if p.x+p.y < q[lo].x+q[lo].y {
			lo = i
		}
		if p.x+p.y > q[hi].x+q[hi].y {
			hi = i
		}
	}
	if lo == hi { // all four on one anti-diagonal: keep the given order
		return q
	}
	var rest []point
	for i, p := range q {
		if i != lo && i != hi {
			rest = append(rest, p)
		}
	}
	tr, bl := rest[0], rest[1]
	if tr.y-tr.x > bl.y-bl.x {
		tr, bl = bl, tr
	}
	return quad{q[lo], tr, q[hi], bl}
}

// insideConvex reports whether p lies in the convex quadrilateral q or on its boundary.
func insideConvex(q quad, p point) bool {
	var pos, neg bool
	for i := range q {
		c := cross3(q[i], q[(i+1)%4], p)
		pos = pos || c > 1e-9
		neg = neg || c < -1e-9
	}
	return !(pos && neg)
}
