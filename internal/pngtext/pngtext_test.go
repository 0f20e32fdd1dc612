package pngtext

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	img.Set(1, 1, color.NRGBA{200, 10, 30, 255})
	entries := []Entry{{"parameters", "a red \"A\"\nSteps: 20, Seed: 7"}, {"Comment", "ünïcödé ✓ 日本"}}
	var buf bytes.Buffer
	if err := Encode(&buf, img, entries); err != nil {
		t.Fatal(err)
	}
	got, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != entries[0] || got[1] != entries[1] {
		t.Fatalf("Read = %q, want %q", got, entries)
	}
	// The standard decoder must still accept the file (CRCs right) and see the same pixels.
	dec, err := png.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r, g, b, _ := dec.At(1, 1).RGBA(); r>>8 != 200 || g>>8 != 10 || b>>8 != 30 {
		t.Errorf("pixel = %d %d %d", r>>8, g>>8, b>>8)
	}
	if !bytes.Contains(buf.Bytes(), []byte("tEXtparameters")) || !bytes.Contains(buf.Bytes(), []byte("iTXtComment")) {
		t.Error("expected a tEXt chunk for Latin-1 text and an iTXt chunk for the rest")
	}
}
