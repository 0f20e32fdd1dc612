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
// shrink factor, as PIL's BILINEAR resize does (what CLIP's and DINOv2's processors do, there
// with a bicubic kernel): shrinking averages every source pixel under the filter instead of
// sampling four, so fine detail does not alias; enlarging is plain bilinear. tmp must hold
// h*ow values.
func resizeAntialias(dst []float32, oh, ow int, src []float32, h, w int, tmp []float32) {
	if oh == h && ow == w {
		copy(dst, src[:h*w])
		return
	}
	xs := filterTaps(w, ow)
	ys := filterTaps(h, oh)
	for y := range h {
		row := src[y*w : (y+1)*w]
		for x, t := range xs {
			var s float64
			for k, wt := range t.weights {
				s += wt * float64(row[t.first+k])
			}
			tmp[y*ow+x] = float32(s)
		}
	}
	for y, t := range ys {
		for x := range ow {
			var s float64
			for k, wt := range t.weights {
				s += wt * float64(tmp[(t.first+k)*ow+x])
			}
			dst[y*ow+x] = float32(s)
		}
	}
}

// taps are the source pixels first..first+len(weights)-1 that make one output pixel.
type taps struct {
	first   int
	weights []float64
}

// filterTaps computes, for each of out output pixels along an axis of in source pixels, the
// normalised triangle-filter weights of PIL's resampling (half-pixel centres, radius one
// source pixel when enlarging and in/out source pixels when shrinking).
func filterTaps(in, out int) []taps {
	scale := float64(in) / float64(out)
	support := max(scale, 1)
	res := make([]taps, out)
	for i := range res {
		center := (float64(i) + 0.5) * scale
		lo := max(int(center-support+0.5), 0)
		hi := min(int(center+support+0.5), in)
		ws := make([]float64, 0, hi-lo)
		var sum float64
		for j := lo; j < hi; j++ {
			wt := max(0, 1-math.Abs((float64(j)+0.5-center)/support))
			ws = append(ws, wt)
			sum += wt
		}
		if sum > 0 {
			for k := range ws {
				ws[k] /= sum
			}
		}
		res[i] = taps{first: lo, weights: ws}
	}
	return res
}
