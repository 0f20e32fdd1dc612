package models

import "fmt"

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
