package bench

import (
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/fksteer/fksteer/pixels"
)

// Reader is an independent judge of generated digits: a k-nearest-neighbour vote over real MNIST
// digits. It shares nothing with the CNN classifier used as the steering reward, so an output
// that fools the classifier with scribbles is not counted as a digit by the reader.
type Reader struct {
	images []float32 // n x 784 in [0, 1]
	labels []byte
	k      int
}

// LoadReader reads the MNIST IDX files (images gzip-compressed or not) for a k-NN reader.
func LoadReader(imagesPath, labelsPath string, k int) (*Reader, error) {
	raw, err := readMaybeGzip(imagesPath)
	if err != nil {
		return nil, err
	}
	labels, err := readMaybeGzip(labelsPath)
	if err != nil {
		return nil, err
	}
	if len(raw) < 16 || binary.BigEndian.Uint32(raw) != 2051 || len(labels) < 8 || binary.BigEndian.Uint32(labels) != 2049 {
		return nil, fmt.Errorf("read MNIST: %s or %s is not an IDX image/label file", imagesPath, labelsPath)
	}
	n := int(binary.BigEndian.Uint32(raw[4:]))
	if len(raw) != 16+n*784 || len(labels) != 8+n {
		return nil, fmt.Errorf("read MNIST: %s holds %d bytes for %d images of 28x28", imagesPath, len(raw), n)
	}
	r := &Reader{images: make([]float32, n*784), labels: labels[8:], k: k}
	for i, b := range raw[16:] {
		r.images[i] = float32(b) / 255
	}
	return r, nil
}

func readMaybeGzip(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read MNIST: %w", err)
	}
	defer f.Close()
	var rd io.Reader = f
	if gz, err := gzip.NewReader(f); err == nil {
		rd = gz
	} else if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(rd)
}

// Read returns the reader's digit for each 1x32x32 image (centre-cropped to 28x28): the majority
// label of its k nearest MNIST digits in Euclidean distance, ties going to the nearest.
func (r *Reader) Read(ctx context.Context, imgs pixels.Images) ([]int, error) {
	if imgs.C != 1 || imgs.H < 28 || imgs.W < 28 {
		return nil, fmt.Errorf("reader: want single-channel images of at least 28x28, got %dx%dx%d", imgs.C, imgs.H, imgs.W)
	}
	out := make([]int, imgs.N)
	crop := make([]float32, 784)
	type hit struct {
		d     float32
		label byte
	}
	best := make([]hit, 0, r.k+1)
	for i := range imgs.N {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		img := imgs.At(i)
		y0, x0 := (imgs.H-28)/2, (imgs.W-28)/2
		for y := range 28 {
			copy(crop[y*28:(y+1)*28], img[(y0+y)*imgs.W+x0:(y0+y)*imgs.W+x0+28])
		}
		best = best[:0]
		for j, lbl := range r.labels {
			ref := r.images[j*784 : (j+1)*784]
			var d float32
			for p, v := range crop {
				e := v - ref[p]
				d += e * e
			}
			if len(best) < r.k || d < best[len(best)-1].d {
				pos, _ := slices.BinarySearchFunc(best, d, func(h hit, d float32) int {
					if h.d < d {
						return -1
					}
					return 1
				})
				best = slices.Insert(best, pos, hit{d, lbl})
				if len(best) > r.k {
					best = best[:r.k]
				}
			}
		}
		var votes [10]int
		for _, h := range best {
			votes[h.label]++
		}
		winner := int(best[0].label)
		for dgt, v := range votes {
			if v > votes[winner] {
				winner = dgt
			}
		}
		out[i] = winner
	}
	return out, nil
}
