package pixels

import (
	"fmt"
	"image"
	"image/color"
	"math"
)

// Images is a batch of N images of identical size, stored contiguously in NCHW order as float32
// in [0, 1]. It is how decoded samples travel from pipelines to rewards and image files.
type Images struct {
	N, C, H, W int
	Pix        []float32
}

// NewImages allocates a zeroed batch.
func NewImages(n, c, h, w int) Images {
	return Images{N: n, C: c, H: h, W: w, Pix: make([]float32, n*c*h*w)}
}

// Len is the number of values in one image (C*H*W).
func (im Images) Len() int { return im.C * im.H * im.W }

// At returns image i's values, sharing storage with the batch.
func (im Images) At(i int) []float32 {
	n := im.Len()
	return im.Pix[i*n : (i+1)*n : (i+1)*n]
}

// Validate checks that the dimensions are positive and agree with the data's length.
func (im Images) Validate() error {
	if im.N <= 0 || im.C <= 0 || im.H <= 0 || im.W <= 0 {
		return fmt.Errorf("image batch has non-positive size %dx%dx%dx%d", im.N, im.C, im.H, im.W)
	}
	if len(im.Pix) != im.N*im.Len() {
		return fmt.Errorf("image batch %dx%dx%dx%d holds %d values, want %d", im.N, im.C, im.H, im.W, len(im.Pix), im.N*im.Len())
	}
	return nil
}

// Image converts image i to 8 bits per channel, rounding to nearest: grey for one channel, RGB
// otherwise (a two-channel image repeats its second channel as blue). It is the one conversion
// fksteer writes images with.
func (im Images) Image(i int) image.Image {
	pix := im.At(i)
	plane := im.H * im.W
	q := func(v float32) uint8 { return uint8(math.Round(float64(min(1, max(0, v))) * 255)) }
	if im.C == 1 {
		g := image.NewGray(image.Rect(0, 0, im.W, im.H))
		for j := range plane {
			g.Pix[j] = q(pix[j])
		}
		return g
	}
	img := image.NewNRGBA(image.Rect(0, 0, im.W, im.H))
	for j := range plane {
		img.SetNRGBA(j%im.W, j/im.W, color.NRGBA{q(pix[j]), q(pix[plane+j]), q(pix[min(2, im.C-1)*plane+j]), 255})
	}
	return img
}

// ResizePlane resamples an h x w plane bilinearly to oh x ow with half-pixel centres, as
// PyTorch's interpolate (align_corners=False) and OpenCV's INTER_LINEAR do, writing dst.
func ResizePlane(dst []float32, oh, ow int, src []float32, h, w int) {
	if oh == h && ow == w {
		copy(dst, src[:h*w])
		return
	}
	sy, sx := float64(h)/float64(oh), float64(w)/float64(ow)
	for y := range oh {
		fy := max(0, (float64(y)+0.5)*sy-0.5)
		y0 := min(int(fy), h-1)
		y1 := min(y0+1, h-1)
		wy := fy - float64(y0)
		for x := range ow {
			fx := max(0, (float64(x)+0.5)*sx-0.5)
			x0 := min(int(fx), w-1)
			x1 := min(x0+1, w-1)
			wx := fx - float64(x0)
			top := float64(src[y0*w+x0])*(1-wx) + float64(src[y0*w+x1])*wx
			bot := float64(src[y1*w+x0])*(1-wx) + float64(src[y1*w+x1])*wx
			dst[y*ow+x] = float32(top*(1-wy) + bot*wy)
		}
	}
}
