package rewards

import (
	"fmt"
	"image"

	"github.com/disintegration/imaging"
	_ "golang.org/x/image/webp" // imaging decodes through image.Decode, so this adds WebP

	"github.com/fksteer/fksteer/models"
)

// LoadImage reads an image file (PNG, JPEG, WebP, GIF, BMP, TIFF), turned upright by its EXIF
// orientation, as a batch of one image in [0, 1]: one channel for
// greyscale files, three (RGB) for everything else, with any transparency composited onto
// black (what the premultiplied colour of a transparent pixel is).
func LoadImage(path string) (models.Images, error) {
	// imaging applies the EXIF orientation of camera JPEGs, which image.Decode ignores: a
	// reference photo taken in portrait would otherwise be scored lying on its side.
	img, err := imaging.Open(path, imaging.AutoOrientation(true))
	if err != nil {
		return models.Images{}, fmt.Errorf("load image %s (PNG, JPEG, WebP, GIF, BMP or TIFF): %w", path, err)
	}
	return FromImage(img), nil
}

// FromImage converts img into a batch of one image in [0, 1], as [LoadImage] does.
func FromImage(img image.Image) models.Images {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	switch m := img.(type) {
	case *image.Gray:
		out := models.NewImages(1, 1, h, w)
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, v := range row {
				out.Pix[y*w+x] = float32(v) / 255
			}
		}
		return out
	case *image.Gray16:
		out := models.NewImages(1, 1, h, w)
		for y := range h {
			for x := range w {
				out.Pix[y*w+x] = float32(m.Gray16At(b.Min.X+x, b.Min.Y+y).Y) / 65535
			}
		}
		return out
	}
	out := models.NewImages(1, 3, h, w)
	plane := h * w
	for y := range h {
		for x := range w {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			i := y*w + x
			out.Pix[i] = float32(r) / 65535
			out.Pix[plane+i] = float32(g) / 65535
			out.Pix[2*plane+i] = float32(bl) / 65535
		}
	}
	return out
}
