package rewards_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/fksteer/fksteer/internal/testimages"
	"github.com/fksteer/fksteer/rewards"
)

// TestLoadImageRefusesPixelBombs: a 20000x20000 PNG header (a file of under 100 bytes) is
// refused from its header, with a message naming the size, the limit and how to raise it, and
// the refusal allocates almost nothing (before the limit, decoding it allocated the 1.6 GB image).
func TestLoadImageRefusesPixelBombs(t *testing.T) {
	dir := t.TempDir()
	bomb := filepath.Join(dir, "bomb.png")
	data := testimages.PNGBomb(20000, 20000)
	if err := os.WriteFile(bomb, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(data) > 100 {
		t.Fatalf("the crafted bomb is %d bytes; it should be tiny", len(data))
	}
	_, err := rewards.LoadImage(bomb)
	var tooMany *rewards.TooManyPixelsError
	if !errors.As(err, &tooMany) || tooMany.Width != 20000 || tooMany.Height != 20000 || tooMany.Limit != rewards.DefaultMaxImagePixels {
		t.Errorf("LoadImage(20000x20000) = %v; want a TooManyPixelsError", err)
	}
	msg := fmt.Sprint(err)
	for _, want := range []string{bomb, "20000x20000 = 400 megapixels is over the limit of 50 megapixels", "--max-image-pixels 400000000"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q is more than one line", msg)
	}

	// 8000x8000 (64 megapixels, over the default limit): decoding would allocate 256 MB for
	// the RGBA image; the refusal must stay within a few kilobytes (file and header buffers).
	small := filepath.Join(dir, "bomb64.png")
	if err := os.WriteFile(small, testimages.PNGBomb(8000, 8000), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = rewards.LoadImage(small)
	runtime.ReadMemStats(&after)
	if !errors.As(err, &tooMany) {
		t.Errorf("LoadImage(8000x8000) = %v; want a TooManyPixelsError", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Errorf("refusing an 8000x8000 header allocated %d bytes; want under 64 KiB", got)
	}
	if allocs := testing.AllocsPerRun(5, func() { rewards.LoadImage(small) }); allocs > 50 {
		t.Errorf("refusing an 8000x8000 header made %.0f allocations; want a handful", allocs)
	}
}

// TestLoadImageLimitEveryFormat: the header is read first for every format LoadImage accepts,
// so the limit refuses each one just over it and loads each one at it, with the right pixels.
func TestLoadImageLimitEveryFormat(t *testing.T) {
	old := rewards.MaxImagePixels
	t.Cleanup(func() { rewards.MaxImagePixels = old })
	img := image.NewNRGBA(image.Rect(0, 0, 6, 4))
	for i := range img.Pix {
		img.Pix[i] = 255 // white, opaque
	}
	img.SetNRGBA(1, 2, color.NRGBA{255, 0, 0, 255})
	dir := t.TempDir()
	encoders := map[string]func(*os.File) error{
		"png":  func(f *os.File) error { return png.Encode(f, img) },
		"jpg":  func(f *os.File) error { return jpeg.Encode(f, img, &jpeg.Options{Quality: 100}) },
		"gif":  func(f *os.File) error { return gif.Encode(f, img, nil) },
		"bmp":  func(f *os.File) error { return bmp.Encode(f, img) },
		"tiff": func(f *os.File) error { return tiff.Encode(f, img, nil) },
		"webp": func(f *os.File) error { _, err := f.Write(whiteWebP(6, 4)); return err },
	}
	for ext, enc := range encoders {
		path := filepath.Join(dir, "img."+ext)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := enc(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		rewards.MaxImagePixels = 23
		var tooMany *rewards.TooManyPixelsError
		if _, err := rewards.LoadImage(path); !errors.As(err, &tooMany) || !strings.Contains(err.Error(), "6x4 = 24 pixels is over the limit of 23 pixels") {
			t.Errorf("%s: 6x4 image with a limit of 23 pixels: %v", ext, err)
		}
		rewards.MaxImagePixels = 24
		got, err := rewards.LoadImage(path)
		if err != nil {
			t.Errorf("%s: 6x4 image with a limit of 24 pixels: %v", ext, err)
			continue
		}
		if got.N != 1 || got.C != 3 || got.H != 4 || got.W != 6 {
			t.Errorf("%s: loaded %dx%dx%dx%d, want 1x3x4x6", ext, got.N, got.C, got.H, got.W)
		}
	}
}

// whiteWebP returns a lossless (VP8L) WebP of w x h white pixels: x/image decodes WebP but does
// not encode it. With no transforms, no colour cache and one prefix code per channel that holds
// a single symbol (255, and distance 0), every pixel costs zero bits, so the bitstream is the
// header and the five codes.
func whiteWebP(w, h int) []byte {
	var bits []bool
	put := func(v, n int) { // LSB first, as VP8L reads
		for i := range n {
			bits = append(bits, v>>i&1 == 1)
		}
	}
	put(w-1, 14)
	put(h-1, 14)
	put(0, 1)     // alpha unused
	put(0, 3)     // version 0
	put(0, 1)     // no transform
	put(0, 1)     // no colour cache
	put(0, 1)     // one prefix code group
	for range 4 { // green, red, blue, alpha: simple code, one symbol of 8 bits, 255
		put(1, 1)
		put(0, 1)
		put(1, 1)
		put(255, 8)
	}
	put(1, 1) // distance: simple code, one 1-bit symbol, 0
	put(0, 1)
	put(0, 1)
	put(0, 1)
	data := []byte{0x2f}
	for i := 0; i < len(bits); i += 8 {
		var b byte
		for j := 0; j < 8 && i+j < len(bits); j++ {
			if bits[i+j] {
				b |= 1 << j
			}
		}
		data = append(data, b)
	}
	if len(data)%2 == 1 {
		data = append(data, 0)
	}
	le := func(n int) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(n)) }
	out := append([]byte("RIFF"), le(4+8+len(data))...)
	out = append(out, "WEBPVP8L"...)
	out = append(out, le(len(data))...)
	return append(out, data...)
}
