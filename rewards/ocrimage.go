package rewards

import (
	"math"
	"sync"

	"github.com/fksteer/fksteer/pixels"
)

// The pixel operations of PaddleOCR's inference, reproduced as OpenCV computes them on 8-bit
// images: PaddleOCR reads images with cv2.imread (8-bit BGR) and every step it takes before
// the models (resizing, the perspective crop) produces 8-bit images again, rounding on the way.
// Reading the same text as PaddleOCR means rounding in the same places, so these functions work
// on 8-bit planes with OpenCV's fixed-point arithmetic rather than on fksteer's float images.

// bgr8 is an image of 8-bit values in OpenCV's order: three planes, blue, green, red.
type bgr8 struct {
	h, w int
	pix  []uint8 // plane c holds pix[c*h*w : (c+1)*h*w]
}

func newBGR8(h, w int) bgr8 { return bgr8{h: h, w: w, pix: make([]uint8, 3*h*w)} }

func (m bgr8) plane(c int) []uint8 { return m.pix[c*m.h*m.w : (c+1)*m.h*m.w] }

// toBGR8 quantises image i of imgs (values in [0, 1]) to 8 bits as fksteer writes PNG files
// (round(v*255)), so an image scored here reads as the same image saved and read by PaddleOCR.
// A grey image fills all three planes, as cv2.cvtColor(GRAY2BGR) does.
func toBGR8(imgs pixels.Images, i int) bgr8 {
	out := newBGR8(imgs.H, imgs.W)
	src := imgs.At(i)
	n := imgs.H * imgs.W
	for c := range 3 {
		from := src[min(2-c, imgs.C-1)*n:][:n] // blue is RGB channel 2
		to := out.plane(c)
		for j, v := range from {
			to[j] = uint8(math.Round(float64(min(1, max(0, v))) * 255))
		}
	}
	return out
}

// OpenCV's fixed-point constants (imgproc/src/resize.cpp, imgwarp.cpp).
const (
	resizeCoefBits  = 11 // INTER_RESIZE_COEF_BITS
	resizeCoefScale = 1 << resizeCoefBits
	interBits       = 5 // INTER_BITS: warps place source points on a 1/32-pixel grid
	interTabSize    = 1 << interBits
	remapCoefBits   = 15 // INTER_REMAP_COEF_BITS
	remapCoefScale  = 1 << remapCoefBits
)

// resizeLinear8 resizes one 8-bit plane as cv2.resize(..., INTER_LINEAR) does: output pixel x
// samples source position (x+0.5)*sw/dw - 0.5 (computed in float32), clamped to the first and
// last pixel; the two weights per axis are rounded to 1/2048, the horizontal pass keeps the
// integer sums, and the vertical pass rounds them back to 8 bits with OpenCV's shifts.
func resizeLinear8(dst []uint8, dh, dw int, src []uint8, sh, sw int) {
	if dh == sh && dw == sw {
		copy(dst, src[:sh*sw])
		return
	}
	xofs, xa := linearTaps(dw, sw, true)
	yofs, ya := linearTaps(dh, sh, false)
	rows := [2][]int32{make([]int32, dw), make([]int32, dw)}
	hresize := func(row []int32, sy int) {
		s := src[sy*sw : (sy+1)*sw]
		for x, sx := range xofs {
			if sx+1 < sw {
				row[x] = int32(s[sx])*xa[2*x] + int32(s[sx+1])*xa[2*x+1]
			} else { // past the last pixel OpenCV takes it alone, at full weight
				row[x] = int32(s[sx]) * resizeCoefScale
			}
		}
	}
	for y, sy := range yofs {
		hresize(rows[0], min(max(sy, 0), sh-1))
		hresize(rows[1], min(max(sy+1, 0), sh-1))
		b0, b1 := ya[2*y], ya[2*y+1]
		out := dst[y*dw : (y+1)*dw]
		for x := range out {
			// VResizeLinear<uchar, int, short, FixedPtCast<..., 22>>: both products are
			// scaled down before they are summed, then rounded by the last shift.
			out[x] = uint8((((b0 * (rows[0][x] >> 4)) >> 16) + ((b1 * (rows[1][x] >> 4)) >> 16) + 2) >> 2)
		}
	}
}

// linearTaps returns, for each of n outputs sampling m inputs, the first source index and the
// two fixed-point weights, as cv::resize computes them for INTER_LINEAR. OpenCV clamps the
// horizontal taps (clamp) but not the vertical ones, whose rows are clamped when read: at the
// top and bottom edges both weights then fall on one row, which rounds slightly differently.
func linearTaps(n, m int, clamp bool) ([]int, []int32) {
	scale := float64(m) / float64(n)
	ofs := make([]int, n)
	w := make([]int32, 2*n)
	for d := range n {
		f := float32((float64(d)+0.5)*scale - 0.5)
		s := int(math.Floor(float64(f)))
		f -= float32(s)
		if clamp && s < 0 {
			f, s = 0, 0
		}
		if clamp && s >= m-1 {
			f, s = 0, m-1
		}
		ofs[d] = s
		w[2*d] = int32(math.RoundToEven(float64((1 - f) * resizeCoefScale)))
		w[2*d+1] = int32(math.RoundToEven(float64(f * resizeCoefScale)))
	}
	return ofs, w
}

// cubicTab is OpenCV's table of fixed-point bicubic weights (initInterTab2D(INTER_CUBIC,
// true)): for each of the 32 x 32 sub-pixel positions, 4 x 4 weights of the a = -0.75 kernel,
// rounded to 1/32768 and corrected so that they sum to exactly 32768.
var cubicTab = sync.OnceValue(func() *[interTabSize * interTabSize][16]int32 {
	var k1 [interTabSize][4]float32
	for i := range k1 {
		x := float32(i) * (1 / float32(interTabSize))
		const a = float32(-0.75)
		c := &k1[i]
		c[0] = ((a*(x+1)-5*a)*(x+1)+8*a)*(x+1) - 4*a
		c[1] = ((a+2)*x-(a+3))*x*x + 1
		c[2] = ((a+2)*(1-x)-(a+3))*(1-x)*(1-x) + 1
		c[3] = 1 - c[0] - c[1] - c[2]
	}
	tab := new([interTabSize * interTabSize][16]int32)
	for i := range interTabSize { // vertical sub-pixel position
		for j := range interTabSize { // horizontal
			t := &tab[i*interTabSize+j]
			var sum int32
			for a := range 4 {
				for b := range 4 {
					t[a*4+b] = int32(math.RoundToEven(float64(k1[i][a] * k1[j][b] * remapCoefScale)))
					sum += t[a*4+b]
				}
			}
			if diff := sum - remapCoefScale; diff != 0 {
				// OpenCV puts the rounding error on the largest (or smallest) of the weights
				// (2..3, 2..3): its ksize/2 offset, which for the cubic kernel is not the
				// central four.
				lo, hi := 10, 10
				for _, k := range []int{10, 11, 14, 15} {
					if t[k] < t[lo] {
						lo = k
					} else if t[k] > t[hi] {
						hi = k
					}
				}
				if diff < 0 {
					t[hi] -= diff
				} else {
					t[lo] -= diff
				}
			}
		}
	}
	return tab
})

// perspective is a 3 x 3 homography, row-major.
type perspective [9]float64

// apply maps (x, y) through h.
func (h perspective) apply(x, y float64) (float64, float64, float64) {
	return h[0]*x + h[1]*y + h[2], h[3]*x + h[4]*y + h[5], h[6]*x + h[7]*y + h[8]
}

// homography returns the projective map taking from[k] to to[k] for the four point pairs
// (cv2.getPerspectiveTransform), or false when the points are degenerate.
func homography(from, to [4]point) (perspective, bool) {
	// Unknowns h0..h7 (h8 = 1): for each pair, u = (h0 x + h1 y + h2) / (h6 x + h7 y + 1) and
	// likewise v, which are linear in h once multiplied out.
	var a [8][9]float64
	for k := range 4 {
		x, y, u, v := from[k].x, from[k].y, to[k].x, to[k].y
		a[k] = [9]float64{x, y, 1, 0, 0, 0, -x * u, -y * u, u}
		a[k+4] = [9]float64{0, 0, 0, x, y, 1, -x * v, -y * v, v}
	}
	// Gaussian elimination with partial pivoting.
	for c := range 8 {
		p := c
		for r := c + 1; r < 8; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[p][c]) {
				p = r
			}
		}
		if math.Abs(a[p][c]) < 1e-12 {
			return perspective{}, false
		}
		a[c], a[p] = a[p], a[c]
		for r := c + 1; r < 8; r++ {
			f := a[r][c] / a[c][c]
			for k := c; k < 9; k++ {
				a[r][k] -= f * a[c][k]
			}
		}
	}
	var h perspective
	for r := 7; r >= 0; r-- {
		s := a[r][8]
		for k := r + 1; k < 8; k++ {
			s -= a[r][k] * h[k]
		}
		h[r] = s / a[r][r]
	}
	h[8] = 1
	return h, true
}

// rotateCrop cuts the text box q (top-left, top-right, bottom-right, bottom-left) out of img
// as PaddleOCR's get_rotate_crop_image does: the crop is as wide as the longer of the box's top
// and bottom sides and as tall as the longer of its left and right sides (both truncated to
// whole pixels), filled by cv2.warpPerspective with INTER_CUBIC and BORDER_REPLICATE from the
// perspective map taking the box's corners to the crop's corners (0, 0), (w, 0), (w, h),
// (0, h); a crop at least 1.5 times taller than wide is turned a quarter counter-clockwise
// (np.rot90), so vertical text is read along its length. ok is false for an empty crop.
//
// Note what the corner convention means: the crop's last column and row are pixels w-1 and
// h-1, so the box's right and bottom edges (at w and h) are not sampled. With the English DB
// model and a 1.5 unclip ratio the detected box ends where the descenders of a line of text
// do, so this is the step at which commas and descenders partly fall out of the crop, in
// PaddleOCR as here.
func rotateCrop(img bgr8, q quad) (bgr8, bool) {
	w := int(max(q[0].dist(q[1]), q[2].dist(q[3])))
	h := int(max(q[0].dist(q[3]), q[1].dist(q[2])))
	if w <= 0 || h <= 0 {
		return bgr8{}, false
	}
	fw, fh := float64(w), float64(h)
	// warpPerspective samples the source through the inverse map, crop -> image.
	inv, ok := homography([4]point{{0, 0}, {fw, 0}, {fw, fh}, {0, fh}}, q)
	if !ok {
		return bgr8{}, false
	}
	out := warpCubic(img, inv, h, w)
	if float64(h)/float64(w) >= 1.5 {
		out = rot90(out)
	}
	return out, true
}

// warpCubic fills an h x w image whose pixel (x, y) comes from img at inv(x, y), as
// cv2.warpPerspective with INTER_CUBIC and BORDER_REPLICATE computes it for 8-bit images: the
// source position is rounded to 1/32 pixel, the 4 x 4 neighbourhood (edge pixels repeated) is
// weighted by the fixed-point table, and the sum is rounded back to 8 bits.
func warpCubic(img bgr8, inv perspective, h, w int) bgr8 {
	out := newBGR8(h, w)
	tab := cubicTab()
	var xs, ys [4]int
	for y := range h {
		for x := range w {
			X0, Y0, W := inv.apply(float64(x), float64(y))
			if W != 0 {
				W = interTabSize / W
			}
			sx := saturateInt(X0 * W)
			sy := saturateInt(Y0 * W)
			wt := &tab[(sy&(interTabSize-1))*interTabSize+(sx&(interTabSize-1))]
			ix, iy := (sx>>interBits)-1, (sy>>interBits)-1
			for k := range 4 {
				xs[k] = clampInt(ix+k, img.w)
				ys[k] = clampInt(iy+k, img.h)
			}
			for c := range 3 {
				src := img.plane(c)
				var sum int32
				for a := range 4 {
					row := src[ys[a]*img.w:]
					for b := range 4 {
						sum += int32(row[xs[b]]) * wt[a*4+b]
					}
				}
				out.plane(c)[y*w+x] = uint8(min(max((sum+(1<<(remapCoefBits-1)))>>remapCoefBits, 0), 255))
			}
		}
	}
	return out
}

// saturateInt rounds v to the nearest integer, ties to even (cvRound), within int32's range.
func saturateInt(v float64) int {
	return int(math.RoundToEven(min(max(v, math.MinInt32), math.MaxInt32)))
}

func clampInt(v, n int) int { return min(max(v, 0), n-1) }

// rot90 turns an image a quarter counter-clockwise (np.rot90): output pixel (x, y) is input
// pixel (w-1-y, x).
func rot90(m bgr8) bgr8 {
	out := newBGR8(m.w, m.h)
	for c := range 3 {
		src, dst := m.plane(c), out.plane(c)
		for y := range m.w {
			for x := range m.h {
				dst[y*m.h+x] = src[x*m.w+m.w-1-y]
			}
		}
	}
	return out
}
