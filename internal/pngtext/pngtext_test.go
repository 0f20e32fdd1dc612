package pngtext

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"strings"
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

// chunks returns the type and body of every chunk of a PNG stream.
func chunks(t *testing.T, data []byte) (types []string, bodies [][]byte) {
	t.Helper()
	for p := 8; p+12 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[p:]))
		types = append(types, string(data[p+4:p+8]))
		bodies = append(bodies, data[p+8:p+8+n])
		p += 12 + n
	}
	return types, bodies
}

// TestTextAgreesWithJSON: text with a NUL or invalid UTF-8 (a prompt read from a binary file)
// is stored as encoding/json stores it in manifest.jsonl: each invalid byte becomes U+FFFD; NUL,
// which PNG text may not hold, becomes U+FFFD too, and such text goes into an iTXt chunk; only
// Latin-1 text without NUL goes into tEXt, byte for byte. Reading the file back gives exactly the
// stored text. (Before, the NUL went raw into tEXt, and the invalid bytes raw into iTXt, while
// the manifest held U+FFFD.)
func TestTextAgreesWithJSON(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 1, 1))
	for _, c := range []struct {
		text, stored, typ string
		body              []byte // the chunk's text bytes
	}{
		{"café\nSteps: 20", "café\nSteps: 20", "tEXt", []byte("caf\xe9\nSteps: 20")},
		{"a\x00b", "a\uFFFDb", "iTXt", []byte("a\xef\xbf\xbdb")},
		{"bad \xff\xfe utf8", "bad \uFFFD\uFFFD utf8", "iTXt", []byte("bad \xef\xbf\xbd\xef\xbf\xbd utf8")},
		{"日本 \xc3", "日本 \uFFFD", "iTXt", []byte("日本 \xef\xbf\xbd")},
	} {
		var buf bytes.Buffer
		if err := Encode(&buf, img, []Entry{{"parameters", c.text}}); err != nil {
			t.Fatal(err)
		}
		types, bodies := chunks(t, buf.Bytes())
		if types[1] != c.typ {
			t.Errorf("%q: chunk %s, want %s", c.text, types[1], c.typ)
			continue
		}
		body := bodies[1][len("parameters\x00"):]
		if c.typ == "iTXt" {
			body = body[4:] // flag, method, empty language tag and translated keyword
		}
		if !bytes.Equal(body, c.body) {
			t.Errorf("%q: %s text bytes %q, want %q", c.text, c.typ, body, c.body)
		}
		got, err := Read(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Text != c.stored {
			t.Errorf("%q: read back %q, want %q", c.text, got, c.stored)
		}
		// What a JSON manifest records for the same text (NUL aside, which JSON can hold).
		if !strings.Contains(c.text, "\x00") {
			js, _ := json.Marshal(c.text)
			var manifest string
			json.Unmarshal(js, &manifest)
			if manifest != c.stored {
				t.Errorf("%q: manifest holds %q, the image %q", c.text, manifest, c.stored)
			}
		}
	}
	// Keywords PNG does not allow are refused before anything is written.
	for _, key := range []string{"", strings.Repeat("k", 80), " lead", "trail ", "two  spaces", "tab\t", "snow☃"} {
		var buf bytes.Buffer
		if err := Encode(&buf, img, []Entry{{key, "x"}}); err == nil || buf.Len() != 0 {
			t.Errorf("keyword %q: error %v, %d bytes written; want an error and nothing written", key, err, buf.Len())
		}
	}
}
