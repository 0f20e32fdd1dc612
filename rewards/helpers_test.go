package rewards_test

import (
	"image"
	"image/color"
	"math"

	"github.com/fksteer/fksteer/pixels"
)

// toRGBA converts image i of an RGB batch in [0, 1] to 8 bits.
func toRGBA(imgs pixels.Images, i int) *image.RGBA {
	pix := imgs.At(i)
	plane := imgs.H * imgs.W
	q := func(v float32) uint8 { return uint8(math.Round(float64(v) * 255)) }
	out := image.NewRGBA(image.Rect(0, 0, imgs.W, imgs.H))
	for j := range plane {
		out.SetRGBA(j%imgs.W, j/imgs.W, color.RGBA{q(pix[j]), q(pix[plane+j]), q(pix[2*plane+j]), 255})
	}
	return out
}
