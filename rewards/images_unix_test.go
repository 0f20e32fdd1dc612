//go:build unix

package rewards_test

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/fksteer/fksteer/rewards"
)

// TestLoadImageFromPipe: reading the header first must not need a seekable file: an image
// given as a named pipe (a shell's process substitution) still loads.
func TestLoadImageFromPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "img.png")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	img := image.NewGray(image.Rect(0, 0, 5, 3))
	img.Pix[7] = 255
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		png.Encode(f, img)
	}()
	got, err := rewards.LoadImage(fifo)
	if err != nil {
		t.Fatal(err)
	}
	if got.C != 1 || got.H != 3 || got.W != 5 || got.Pix[7] != 1 || got.Pix[6] != 0 {
		t.Errorf("loaded %dx%dx%d with pixels %v; want 1x3x5 with pixel 7 white", got.C, got.H, got.W, got.Pix)
	}
}
