package pngtext

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRoundTrip writes an arbitrary keyword and text (seeds: testdata/fuzz/FuzzRoundTrip) and
// reads the file back. Properties: no panic; a keyword PNG refuses is an error with nothing
// written; otherwise the file decodes as PNG, reads back as exactly Clean(text), which is what a
// JSON manifest holds for text without NUL, and its chunk is tEXt exactly when Clean(text) is
// Latin-1, with no NUL in the text in either chunk.
func FuzzRoundTrip(f *testing.F) {
	img := image.NewGray(image.Rect(0, 0, 2, 1))
	img.Pix[1] = 200
	f.Fuzz(func(t *testing.T, key, text string) {
		var buf bytes.Buffer
		err := Encode(&buf, img, []Entry{{key, text}})
		if _, kerr := keyword(key); kerr != nil {
			if err == nil || buf.Len() != 0 {
				t.Fatalf("keyword %q: error %v with %d bytes written; want an error and nothing written", key, err, buf.Len())
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(%q, %q): %v", key, text, err)
		}
		if _, err := png.Decode(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("the standard decoder refuses the file: %v", err)
		}
		got, err := Read(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		want := Clean(text)
		if len(got) != 1 || got[0].Key != key || got[0].Text != want {
			t.Fatalf("Read = %q, want [{%q %q}]", got, key, want)
		}
		if !utf8.ValidString(want) || strings.ContainsRune(want, 0) {
			t.Fatalf("Clean(%q) = %q is not valid UTF-8 without NUL", text, want)
		}
		if !strings.ContainsRune(text, 0) {
			js, err := json.Marshal(text)
			if err != nil {
				t.Fatal(err)
			}
			var manifest string
			if err := json.Unmarshal(js, &manifest); err != nil {
				t.Fatal(err)
			}
			if manifest != want {
				t.Fatalf("JSON holds %q, the image %q", manifest, want)
			}
		}
		types, bodies := chunks(t, buf.Bytes())
		// The keyword is written in Latin-1, one byte a character (not its UTF-8 length), then a NUL.
		body := bodies[1][utf8.RuneCountInString(got[0].Key)+1:]
		wantType := "iTXt"
		if latin1(want) {
			wantType = "tEXt"
		} else {
			body = body[4:]
		}
		if types[1] != wantType {
			t.Fatalf("text %q went into %s, want %s", want, types[1], wantType)
		}
		if bytes.IndexByte(body, 0) >= 0 {
			t.Fatalf("%s text %q holds a NUL", types[1], body)
		}
	})
}

// FuzzRead reads arbitrary bytes as a PNG stream (seeds: testdata/fuzz/FuzzRead). Properties:
// no panic, and every text it returns is valid UTF-8 without NUL.
func FuzzRead(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, e := range entries {
			if !utf8.ValidString(e.Key) || !utf8.ValidString(e.Text) || strings.ContainsRune(e.Text, 0) {
				t.Fatalf("Read returned %q", e)
			}
		}
	})
}
