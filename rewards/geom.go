package rewards

import (
	"cmp"
	"math"
	"slices"
)

// Plane geometry for text detection, in pixel coordinates (x right, y down; a pixel's index is
// its centre). PaddleOCR's DB post-processing hands its geometry to OpenCV (cv2.minAreaRect,
// cv2.boxPoints) and to the Clipper library (pyclipper's polygon offset); the box a line of text
// gets, and so the crop the recogniser reads, depends on their rounding. The functions here
// reproduce those computations step by step, in the same precision (float32 where OpenCV
// uses it), rather than the exact geometry they approximate.

type point struct{ x, y float64 }

func pt(x, y int) point               { return point{float64(x), float64(y)} }
func (p point) add(q point) point     { return point{p.x + q.x, p.y + q.y} }
func (p point) sub(q point) point     { return point{p.x - q.x, p.y - q.y} }
func (p point) scale(s float64) point { return point{p.x * s, p.y * s} }
func (p point) dot(q point) float64   { return p.x*q.x + p.y*q.y }
func (p point) cross(q point) float64 { return p.x*q.y - p.y*q.x }
func (p point) dist(q point) float64  { return math.Hypot(p.x-q.x, p.y-q.y) }
func (p point) eq(q point) bool       { return p == q }

// cross3 is the cross product of oa and ob: positive when o, a, b turn counter-clockwise
// (clockwise on screen, y pointing down).
func cross3(o, a, b point) float64 { return a.sub(o).cross(b.sub(o)) }

func pointCmp(a, b point) int { return cmp.Or(cmp.Compare(a.x, b.x), cmp.Compare(a.y, b.y)) }

// quad is a quadrilateral: top-left, top-right, bottom-right, bottom-left.
type quad [4]point

// width and height are the longer of the two horizontal and of the two vertical sides.
func (q quad) width() float64  { return max(q[0].dist(q[1]), q[2].dist(q[3])) }
func (q quad) height() float64 { return max(q[0].dist(q[3]), q[1].dist(q[2])) }

// mapped applies f to every corner.
func (q quad) mapped(f func(point) point) quad { return quad{f(q[0]), f(q[1]), f(q[2]), f(q[3])} }

// convexHull returns the convex hull of pts without collinear points, in the order
// cv2.convexHull returns it (clockwise=false): starting at the point with the largest x (the
// largest y among those), turning with positive cross products in these y-down coordinates.
// The order matters because cv2.minAreaRect breaks ties between equally small rectangles by it.
// pts is sorted in place.
func convexHull(pts []point) []point {
	slices.SortFunc(pts, pointCmp)
	pts = slices.CompactFunc(pts, point.eq)
	if len(pts) < 3 {
		return slices.Clone(pts)
	}
	// Andrew's monotone chain: one chain left to right keeping only left turns (in y-down
	// coordinates, cross < 0 is dropped), then back.
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
	// Start where OpenCV starts: at the largest point by x, then y.
	largest := pts[len(pts)-1]
	first := slices.IndexFunc(hull, func(p point) bool { return p == largest })
	return append(hull[first:], hull[:first]...)
}

// rotRect is OpenCV's RotatedRect: centre, size and angle in degrees, in float32 as OpenCV
// stores them.
type rotRect struct {
	cx, cy, w, h, angle float32
}

// minAreaRect is cv2.minAreaRect: the smallest rectangle around pts, found by OpenCV's rotating
// calipers over the convex hull, in float32 arithmetic as OpenCV computes it.
func minAreaRect(pts []point) rotRect {
	hull := convexHull(slices.Clone(pts))
	n := len(hull)
	switch n {
	case 0:
		return rotRect{}
	case 1:
		return rotRect{cx: float32(hull[0].x), cy: float32(hull[0].y)}
	case 2:
		dx, dy := float64(float32(hull[1].x)-float32(hull[0].x)), float64(float32(hull[1].y)-float32(hull[0].y))
		return rotRect{
			cx: (float32(hull[0].x) + float32(hull[1].x)) * 0.5, cy: (float32(hull[0].y) + float32(hull[1].y)) * 0.5,
			w: float32(math.Sqrt(dx*dx + dy*dy)), angle: float32(float64(float32(math.Atan2(dy, dx))) * 180 / math.Pi),
		}
	}
	type vec struct{ x, y float32 }
	p := make([]vec, n)
	for i, q := range hull {
		p[i] = vec{float32(q.x), float32(q.y)}
	}
	// Edge vectors, their inverse lengths, and the extreme points that start the calipers.
	edge := make([]vec, n)
	inv := make([]float32, n)
	var left, bottom, right, top int
	leftX, rightX, topY, bottomY := p[0].x, p[0].x, p[0].y, p[0].y
	for i := range n {
		p0, p1 := p[i], p[(i+1)%n]
		if p0.x < leftX {
			leftX, left = p0.x, i
		}
		if p0.x > rightX {
			rightX, right = p0.x, i
		}
		if p0.y > topY {
			topY, top = p0.y, i
		}
		if p0.y < bottomY {
			bottomY, bottom = p0.y, i
		}
		dx, dy := float64(p1.x-p0.x), float64(p1.y-p0.y)
		edge[i] = vec{float32(dx), float32(dy)}
		inv[i] = float32(1 / math.Sqrt(dx*dx+dy*dy))
	}
	// The hull's orientation decides the first caliper direction.
	orientation := float32(0)
	ax, ay := float64(edge[n-1].x), float64(edge[n-1].y)
	for i := range n {
		bx, by := float64(edge[i].x), float64(edge[i].y)
		if c := ax*by - ay*bx; c != 0 {
			orientation = float32(math.Copysign(1, c))
			break
		}
		ax, ay = bx, by
	}
	baseA, baseB := orientation, float32(0)
	seq := [4]int{bottom, right, top, left}
	minArea := float32(math.MaxFloat32)
	var bestLeft, bestBottom int
	var bestA, bestB, bestW, bestH float32
	for range n {
		// The caliper making the smallest angle with its next hull edge turns onto that edge.
		dp := [4]float32{
			baseA*edge[seq[0]].x + baseB*edge[seq[0]].y,
			-baseB*edge[seq[1]].x + baseA*edge[seq[1]].y,
			-baseA*edge[seq[2]].x - baseB*edge[seq[2]].y,
			baseB*edge[seq[3]].x - baseA*edge[seq[3]].y,
		}
		main, maxCos := 0, dp[0]*inv[seq[0]]
		for i := 1; i < 4; i++ {
			if c := dp[i] * inv[seq[i]]; c > maxCos {
				main, maxCos = i, c
			}
		}
		k := seq[main]
		lx, ly := edge[k].x*inv[k], edge[k].y*inv[k]
		switch main {
		case 0:
			baseA, baseB = lx, ly
		case 1:
			baseA, baseB = ly, -lx
		case 2:
			baseA, baseB = -lx, -ly
		case 3:
			baseA, baseB = -ly, lx
		}
		seq[main] = (seq[main] + 1) % n
		dx, dy := p[seq[1]].x-p[seq[3]].x, p[seq[1]].y-p[seq[3]].y
		width := dx*baseA + dy*baseB
		dx, dy = p[seq[2]].x-p[seq[0]].x, p[seq[2]].y-p[seq[0]].y
		height := -dx*baseB + dy*baseA
		if area := width * height; area <= minArea {
			minArea = area
			bestLeft, bestBottom = seq[3], seq[0]
			bestA, bestB, bestW, bestH = baseA, baseB, width, height
		}
	}
	a1, b1 := bestA, bestB
	a2, b2 := -bestB, bestA
	c1 := a1*p[bestLeft].x + p[bestLeft].y*b1
	c2 := a2*p[bestBottom].x + p[bestBottom].y*b2
	idet := 1 / (a1*b2 - a2*b1)
	px, py := (c1*b2-c2*b1)*idet, (a1*c2-a2*c1)*idet
	v1 := vec{a1 * bestW, b1 * bestW}
	v2 := vec{a2 * bestH, b2 * bestH}
	return rotRect{
		cx: px + (v1.x+v2.x)*0.5, cy: py + (v1.y+v2.y)*0.5,
		w:     float32(math.Sqrt(float64(v1.x)*float64(v1.x) + float64(v1.y)*float64(v1.y))),
		h:     float32(math.Sqrt(float64(v2.x)*float64(v2.x) + float64(v2.y)*float64(v2.y))),
		angle: float32(float64(float32(math.Atan2(float64(v1.y), float64(v1.x)))) * 180 / math.Pi),
	}
}

// shortSide is min(rect.size), the side PaddleOCR compares with min_size.
func (r rotRect) shortSide() float32 { return min(r.w, r.h) }

// points is cv2.boxPoints: the rectangle's corners, in float32.
func (r rotRect) points() [4]point {
	ang := float64(r.angle) * math.Pi / 180
	b := float32(math.Cos(ang)) * 0.5
	a := float32(math.Sin(ang)) * 0.5
	var p [4][2]float32
	p[0] = [2]float32{r.cx - a*r.h - b*r.w, r.cy + b*r.h - a*r.w}
	p[1] = [2]float32{r.cx + a*r.h - b*r.w, r.cy - b*r.h - a*r.w}
	p[2] = [2]float32{2*r.cx - p[0][0], 2*r.cy - p[0][1]}
	p[3] = [2]float32{2*r.cx - p[1][0], 2*r.cy - p[1][1]}
	var out [4]point
	for i, q := range p {
		out[i] = point{float64(q[0]), float64(q[1])}
	}
	return out
}

// miniBox is PaddleOCR's get_mini_boxes: the corners of the smallest rectangle around pts,
// ordered top-left, top-right, bottom-right, bottom-left by sorting them by x (stably) and
// taking the upper of the two left and of the two right corners first; and its shorter side.
func miniBox(pts []point) (quad, float32) {
	r := minAreaRect(pts)
	p := r.points()
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
	return q, r.shortSide()
}

// clockwise orders four points as PaddleOCR's order_points_clockwise does (with numpy's
// argmin and argmax, which take the first of equal values): top-left has the smallest x+y,
// bottom-right the largest; of the others, top-right has the smallest y-x, bottom-left the
// largest.
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
	var rest []point // np.delete(pts, (lo, hi)): one point fewer when lo == hi
	for i, p := range q {
		if i != lo && i != hi {
			rest = append(rest, p)
		}
	}
	tr, bl := 0, 0
	for i, p := range rest {
		if p.y-p.x < rest[tr].y-rest[tr].x {
			tr = i
		}
		if p.y-p.x > rest[bl].y-rest[bl].x {
			bl = i
		}
	}
	return quad{q[lo], rest[tr], q[hi], rest[bl]}
}

// offsetRound grows a closed polygon by delta as pyclipper's PyclipperOffset does with
// JT_ROUND and ET_CLOSEDPOLYGON (Clipper 6.4, arc tolerance 0.25): the vertices are truncated
// to integers, the polygon is turned counter-clockwise (in Clipper's y-up sense), every edge is
// moved out by delta and every convex corner is rounded by an arc of short chords, each result
// point rounded to integers (half away from zero). It returns nil when fewer than three
// distinct vertices remain. (Clipper's final union only removes collinear and duplicate
// points, which change no hull, so it is left out.)
func offsetRound(poly []point, delta float64) []point {
	type ip struct{ x, y int64 }
	src := make([]ip, 0, len(poly))
	for _, p := range poly { // pyclipper converts coordinates to integers by truncation
		src = append(src, ip{int64(p.x), int64(p.y)})
	}
	for len(src) > 1 && src[0] == src[len(src)-1] {
		src = src[:len(src)-1]
	}
	path := src[:1]
	for _, p := range src[1:] {
		if p != path[len(path)-1] {
			path = append(path, p)
		}
	}
	if len(path) < 3 {
		return nil
	}
	var area float64
	for i, j := 0, len(path)-1; i < len(path); j, i = i, i+1 {
		area += (float64(path[j].x) + float64(path[i].x)) * (float64(path[j].y) - float64(path[i].y))
	}
	if -area*0.5 < 0 { // Clipper's Orientation is false: reverse (FixOrientations)
		slices.Reverse(path)
	}
	y := 0.25 // arc tolerance
	if y > math.Abs(delta)*0.25 {
		y = math.Abs(delta) * 0.25
	}
	steps := math.Pi / math.Acos(1-y/math.Abs(delta))
	if steps > math.Abs(delta)*math.Pi {
		steps = math.Abs(delta) * math.Pi
	}
	sin, cos := math.Sin(2*math.Pi/steps), math.Cos(2*math.Pi/steps)
	stepsPerRad := steps / (2 * math.Pi)
	if delta < 0 {
		sin = -sin
	}
	n := len(path)
	normals := make([]point, n)
	for j := range n {
		a, b := path[j], path[(j+1)%n]
		dx, dy := float64(b.x-a.x), float64(b.y-a.y)
		f := 1 / math.Sqrt(dx*dx+dy*dy)
		normals[j] = point{dy * f, -dx * f}
	}
	round := func(v float64) float64 { // Clipper's Round: half away from zero
		if v < 0 {
			return float64(int64(v - 0.5))
		}
		return float64(int64(v + 0.5))
	}
	at := func(j int, nx, ny float64) point {
		return point{round(float64(path[j].x) + nx*delta), round(float64(path[j].y) + ny*delta)}
	}
	var out []point
	k := n - 1
	for j := range n {
		nk, nj := normals[k], normals[j]
		sinA := nk.x*nj.y - nj.x*nk.y
		switch {
		case math.Abs(sinA*delta) < 1 && nk.x*nj.x+nj.y*nk.y > 0: // almost straight on
			out = append(out, at(j, nk.x, nk.y))
			k = j
			continue
		case sinA > 1:
			sinA = 1
		case sinA < -1:
			sinA = -1
		}
		if sinA*delta < 0 { // a concave corner
			out = append(out, at(j, nk.x, nk.y), point{float64(path[j].x), float64(path[j].y)}, at(j, nj.x, nj.y))
		} else { // DoRound: an arc from the previous edge's normal to this one's
			a := math.Atan2(sinA, nk.x*nj.x+nk.y*nj.y)
			m := max(int(round(stepsPerRad*math.Abs(a))), 1)
			x, y := nk.x, nk.y
			for range m {
				out = append(out, at(j, x, y))
				x, y = x*cos-sin*y, x*sin+y*cos
			}
			out = append(out, at(j, nj.x, nj.y))
		}
		k = j
	}
	return out
}
