package pixels

import (
	"image"
	"image/color"
	"slices"
	"testing"
)

func TestImage(t *testing.T) {
	cases := []struct {
		name string
		c    int
		pix  []float32 // image 1 of a batch of two; image 0 is all zeros
		want color.Color
	}{
		// 0.5*255 = 127.5 rounds half away from zero; values outside [0, 1] clamp.
		{"grey half", 1, []float32{0.5}, color.Gray{128}},
		{"grey rounds to nearest", 1, []float32{0.298}, color.Gray{76}}, // 75.99
		{"grey below 0", 1, []float32{-0.5}, color.Gray{0}},
		{"grey above 1", 1, []float32{1.5}, color.Gray{255}},
		{"rgb", 3, []float32{0.2, 0.4, 1}, color.NRGBA{51, 102, 255, 255}},
		{"rgb clamped", 3, []float32{-1, 2, 0.002}, color.NRGBA{0, 255, 1, 255}},
		{"two channels repeat the second as blue", 2, []float32{0.2, 0.4}, color.NRGBA{51, 102, 102, 255}},
	}
	for _, c := range cases {
		im := NewImages(2, c.c, 1, 1)
		copy(im.At(1), c.pix)
		img := im.Image(1)
		if got := img.At(0, 0); got != c.want {
			t.Errorf("%s: pixel %#v, want %#v", c.name, got, c.want)
		}
		if _, grey := img.(*image.Gray); grey != (c.c == 1) {
			t.Errorf("%s: %T for %d channels", c.name, img, c.c)
		}
	}
}

// TestImageLayout: pixel (x, y) of each channel plane lands at (x, y) of the image.
func TestImageLayout(t *testing.T) {
	im := NewImages(1, 3, 2, 3)
	for j := range im.Pix {
		im.Pix[j] = float32(j) / 255 // channel c, row y, column x holds 6c + 3y + x
	}
	img := im.Image(0)
	if b := img.Bounds(); b.Dx() != 3 || b.Dy() != 2 {
		t.Fatalf("bounds %v, want 3x2", b)
	}
	if got, want := img.At(2, 1), (color.NRGBA{5, 11, 17, 255}); got != want {
		t.Errorf("pixel (2, 1) = %#v, want %#v", got, want)
	}
}

func TestResizePlane(t *testing.T) {
	cases := []struct {
		name         string
		src          []float32
		h, w, oh, ow int
		want         []float32
	}{
		{"identity", []float32{1, 2, 3, 4, 5, 6}, 2, 3, 2, 3, []float32{1, 2, 3, 4, 5, 6}},
		// Halving with half-pixel centres samples the middle of each 2x2 block: its mean.
		{"2x down", []float32{
			0, 2, 4, 6,
			8, 10, 12, 14,
			1, 3, 5, 7,
			9, 11, 13, 15,
		}, 4, 4, 2, 2, []float32{5, 9, 6, 10}},
		// Doubling: output centres at source positions -0.25, 0.25, 0.75, 1.25; the outer two
		// clamp to the edge values.
		{"2x up", []float32{0, 4}, 1, 2, 1, 4, []float32{0, 1, 3, 4}},
	}
	for _, c := range cases {
		dst := make([]float32, c.oh*c.ow)
		ResizePlane(dst, c.oh, c.ow, c.src, c.h, c.w)
		if !slices.Equal(dst, c.want) {
			t.Errorf("%s: %v, want %v", c.name, dst, c.want)
		}
	}
}
