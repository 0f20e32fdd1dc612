package rewards

import "math"

// Image preprocessing shared by the rewards that run ONNX vision models. Images arrive as float
// planes in [0, 1]; every function here writes into caller-provided buffers.

// centerCrop copies the centred size x size window of an h x w plane into dst. If the plane is
// smaller than size in a dimension, the window is clamped to the plane.
func centerCrop(dst, src []float32, h, w, size int) (int, int) {
	ch, cw := min(size, h), min(size, w)
	y0, x0 := (h-ch)/2, (w-cw)/2
	for y := range ch {
		copy(dst[y*cw:(y+1)*cw], src[(y0+y)*w+x0:(y0+y)*w+x0+cw])
	}
	return ch, cw
}

// channelPlane returns channel c of an image with imgC channels, mapping between grey and RGB:
// a grey image feeds every channel, and a single-channel model gets the ITU-R BT.601 luma of an
// RGB image (written to scratch).
func channelPlane(img []float32, imgC, plane, c, wantC int, scratch []float32) []float32 {
	switch {
	case imgC == 1:
		return img[:plane]
	case wantC == 1 && imgC >= 3:
		r, g, b := img[:plane], img[plane:2*plane], img[2*plane:3*plane]
		for i := range plane {
			scratch[i] = 0.299*r[i] + 0.587*g[i] + 0.114*b[i]
		}
		return scratch[:plane]
	}
	return img[min(c, imgC-1)*plane : (min(c, imgC-1)+1)*plane]
}

// resizeAntialias resamples an h x w plane to oh x ow with a triangle filter that widens by the
// shrink factor, as PIL's BILINEAR resize does: shrinking averages every source pixel under the
// filter instead of sampling four, so fine detail does not alias; enlarging is plain bilinear.
// tmp must hold h*ow values.
func resizeAntialias(dst []float32, oh, ow int, src []float32, h, w int, tmp []float32) {
	resizeFiltered(dst, oh, ow, src, h, w, tmp, triangle)
}

// resizeFiltered resamples an h x w plane to oh x ow with PIL's separable resampling: rows
// first into tmp (h*ow values), then columns, each output pixel a normalised sum of the source
// pixels under filter f, widened by the shrink factor.
func resizeFiltered(dst []float32, oh, ow int, src []float32, h, w int, tmp []float32, f filter) {
	if oh == h && ow == w {
		copy(dst, src[:h*w])
		return
	}
	xs := filterTaps(w, ow, f)
	ys := filterTaps(h, oh, f)
	for y := range h {
		row := src[y*w : (y+1)*w]
		for x, t := range xs {
			var s float64
			for k, wt := range t.weights {
				s += wt * float64(row[t.first+k])
			}
			tmp[y*ow+x] = f.out(s)
		}
	}
	for y, t := range ys {
		for x := range ow {
			var s float64
			for k, wt := range t.weights {
				s += wt * float64(tmp[(t.first+k)*ow+x])
			}
			dst[y*ow+x] = f.out(s)
		}
	}
}

// filter is one of PIL's resampling filters: a kernel of radius support (in source pixels when
// enlarging), and whether each pass clips to [0, 1].
type filter struct {
	support float64
	kernel  func(x float64) float64
	// clip mirrors PIL resizing 8-bit images, whose passes clip to 0..255: a kernel with
	// negative lobes overshoots at edges, and what CLIP-style models saw was clipped.
	clip bool
}

var (
	// triangle is PIL's BILINEAR filter.
	triangle = filter{support: 1, kernel: func(x float64) float64 { return max(0, 1-math.Abs(x)) }}
	// bicubic is PIL's BICUBIC filter (Keys' cubic convolution, a = -0.5), which
	// torchvision's Resize applies to PIL images with InterpolationMode.BICUBIC: CLIP's and
	// ImageReward's preprocessing.
	bicubic = filter{support: 2, kernel: cubic, clip: true}
)

// cubic is the kernel of PIL's bicubic filter with a = -0.5.
func cubic(x float64) float64 {
	const a = -0.5
	x = math.Abs(x)
	switch {
	case x < 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return (((x-5)*x+8)*x - 4) * a
	}
	return 0
}

// out finishes one pass's value: clipped to [0, 1] where the filter says so.
func (f filter) out(s float64) float32 {
	if f.clip {
		s = min(max(s, 0), 1)
	}
	return float32(s)
}

// taps are the source pixels first..first+len(weights)-1 that make one output pixel.
type taps struct {
	first   int
	weights []float64
}

// filterTaps computes, for each of out output pixels along an axis of in source pixels, the
// normalised weights of filter f as PIL's precompute_coeffs does: half-pixel centres, and the
// kernel stretched by in/out when shrinking, so its radius is f.support source pixels when
// enlarging and f.support*in/out when shrinking.
func filterTaps(in, out int, f filter) []taps {
	scale := float64(in) / float64(out)
	stretch := max(scale, 1)
	support := f.support * stretch
	res := make([]taps, out)
	for i := range res {
		center := (float64(i) + 0.5) * scale
		lo := max(int(center-support+0.5), 0)
		hi := min(int(center+support+0.5), in)
		ws := make([]float64, 0, hi-lo)
		var sum float64
		for j := lo; j < hi; j++ {
			wt := f.kernel((float64(j) + 0.5 - center) / stretch)
			ws = append(ws, wt)
			sum += wt
		}
		if sum != 0 {
			for k := range ws {
				ws[k] /= sum
			}
		}
		res[i] = taps{first: lo, weights: ws}
	}
	return res
}
