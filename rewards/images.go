package rewards

import (
	"bytes"
	"fmt"
	"image"
	"io"
	"os"
	"strconv"

	"github.com/disintegration/imaging"
	_ "golang.org/x/image/webp" // imaging decodes through image.Decode, so this adds WebP

	"github.com/fksteer/fksteer/pixels"
)

// DefaultMaxImagePixels is the default of [MaxImagePixels]: 50 megapixels, more than a
// full-frame camera's photo, about 1 GB once decoded and converted to float32.
const DefaultMaxImagePixels int64 = 50_000_000

// MaxImagePixels is the largest image (width x height) that [LoadImage] and [OpenImage] decode.
// A compressed file can claim any size in its header: a 1 MB PNG of one colour may decode to
// 20000x20000 pixels and gigabytes of memory, so the header is read first and larger images are
// refused before any pixel is decoded. A program that means to read larger images raises it
// once, before it loads any (the fksteer CLI sets it from --max-image-pixels); it is not
// synchronised. Zero or less turns the check off.
var MaxImagePixels = DefaultMaxImagePixels

// TooManyPixelsError is what [LoadImage] and [OpenImage] return for an image larger than
// [MaxImagePixels].
type TooManyPixelsError struct {
	Path          string
	Width, Height int
	// Limit is the value of MaxImagePixels that refused the image.
	Limit int64
}

// Error names the image's size, the limit and the setting that raises it, in one line.
func (e *TooManyPixelsError) Error() string {
	n := int64(e.Width) * int64(e.Height) // each at most 2^31, so no overflow
	return fmt.Sprintf("load image %s: %dx%d = %s is over the limit of %s, which guards against small files that decode to gigabytes; if the image is meant, raise the limit (fksteer: --max-image-pixels %d)",
		e.Path, e.Width, e.Height, megapixels(n), megapixels(e.Limit), n)
}

// LoadImage reads an image file (PNG, JPEG, WebP, GIF, BMP, TIFF), turned upright by its EXIF
// orientation, as a batch of one image in [0, 1]: one channel for
// greyscale files, three (RGB) for everything else, with any transparency composited onto
// black (what the premultiplied colour of a transparent pixel is). An image larger than
// [MaxImagePixels] is refused, from its header, with a [*TooManyPixelsError].
func LoadImage(path string) (pixels.Images, error) {
	img, err := OpenImage(path)
	if err != nil {
		return pixels.Images{}, err
	}
	return FromImage(img), nil
}

// OpenImage decodes an image file as [LoadImage] does, without converting it: the format's
// header is read first, and an image larger than [MaxImagePixels] is refused with
// a [*TooManyPixelsError] before its pixels are decoded.
func OpenImage(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	defer f.Close()
	// What DecodeConfig read is kept, so that a pipe (a process substitution, /dev/stdin) can be
	// decoded too.
	var head bytes.Buffer
	return decode(io.TeeReader(f, &head), func() io.Reader {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return io.MultiReader(&head, f) // not seekable: replay the header
		}
		return f
	}, path)
}

// DecodeImage decodes an image held in memory (an upload) as [OpenImage] decodes a file; name
// says where it came from in messages.
func DecodeImage(data []byte, name string) (image.Image, error) {
	return decode(bytes.NewReader(data), func() io.Reader { return bytes.NewReader(data) }, name)
}

// decode reads the header from head, refuses an image over [MaxImagePixels], then decodes the
// whole image from the reader again returns.
func decode(head io.Reader, again func() io.Reader, name string) (image.Image, error) {
	// DecodeConfig reads only the header (PNG's IHDR, JPEG's SOF, ...) of every format that
	// image.Decode knows, so the size is known before the decoder allocates the image.
	cfg, _, err := image.DecodeConfig(head)
	if err != nil {
		return nil, fmt.Errorf("load image %s (PNG, JPEG, WebP, GIF, BMP or TIFF): %w", name, err)
	}
	if err := checkPixels(name, cfg.Width, cfg.Height); err != nil {
		return nil, err
	}
	// imaging applies the EXIF orientation of camera JPEGs, which image.Decode ignores: a
	// reference photo taken in portrait would otherwise be scored lying on its side.
	img, err := imaging.Decode(again(), imaging.AutoOrientation(true))
	if err != nil {
		return nil, fmt.Errorf("load image %s (PNG, JPEG, WebP, GIF, BMP or TIFF): %w", name, err)
	}
	return img, nil
}

// checkPixels refuses a w x h image over [MaxImagePixels].
func checkPixels(path string, w, h int) error {
	if limit := MaxImagePixels; limit > 0 && int64(w)*int64(h) > limit {
		return &TooManyPixelsError{Path: path, Width: w, Height: h, Limit: limit}
	}
	return nil
}

// megapixels formats a pixel count for a message: "400 megapixels", "24 pixels".
func megapixels(n int64) string {
	if n < 1_000_000 {
		return strconv.FormatInt(n, 10) + " pixels"
	}
	return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + " megapixels"
}

// FromImage converts img into a batch of one image in [0, 1], as [LoadImage] does.
func FromImage(img image.Image) pixels.Images {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	switch m := img.(type) {
	case *image.Gray:
		out := pixels.NewImages(1, 1, h, w)
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, v := range row {
				out.Pix[y*w+x] = float32(v) / 255
			}
		}
		return out
	case *image.Gray16:
		out := pixels.NewImages(1, 1, h, w)
		for y := range h {
			for x := range w {
				out.Pix[y*w+x] = float32(m.Gray16At(b.Min.X+x, b.Min.Y+y).Y) / 65535
			}
		}
		return out
	}
	out := pixels.NewImages(1, 3, h, w)
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
