// Package pngtext encodes PNG images with text chunks (such as the "parameters" chunk in which
// diffusion tools record prompt and settings) and reads those chunks back. The standard library's
// image/png neither writes nor exposes them.
//
// Text is stored as what [Clean] makes of it, which is also what encoding/json writes for a
// string without NUL: so an image's chunk and a JSON manifest that records the same text agree.
package pngtext

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"strings"
	"unicode/utf8"
)

// Entry is one text chunk: a keyword (1-79 Latin-1 characters) and its text.
type Entry struct {
	Key, Text string
}

var signature = []byte("\x89PNG\r\n\x1a\n")

// Clean returns text as a PNG text chunk stores it and [Read] returns it: every byte that is not
// part of valid UTF-8 becomes U+FFFD, one per byte, as encoding/json writes such bytes (so a
// manifest line and the image's chunk agree), and every NUL becomes U+FFFD too, since the PNG
// specification does not allow NUL in text (readers take it for the end of the string).
func Clean(text string) string {
	if utf8.ValidString(text) && !strings.Contains(text, "\x00") {
		return text
	}
	var b strings.Builder
	b.Grow(len(text))
	for _, r := range text { // range yields U+FFFD for each invalid byte
		if r == 0 {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Encode writes img as PNG with the given text chunks placed right after the header, so readers
// that stop early still find them. Each text is stored as [Clean] makes it: in a tEXt chunk when
// it is Latin-1, in an iTXt (UTF-8) chunk otherwise. A keyword that PNG does not allow (see
// [Entry]) is an error, and nothing is written. It compresses as much as it can
// (png.BestCompression).
func Encode(w io.Writer, img image.Image, entries []Entry) error {
	return EncodeLevel(w, img, entries, png.BestCompression)
}

// EncodeLevel is Encode with the given compression level, for large images where the best
// compression costs more time than its bytes are worth.
func EncodeLevel(w io.Writer, img image.Image, entries []Entry, level png.CompressionLevel) error {
	chunks := make([][]byte, len(entries))
	for i, e := range entries {
		c, err := textChunk(e)
		if err != nil {
			return err
		}
		chunks[i] = c
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: level}
	if err := enc.Encode(&buf, img); err != nil {
		return err
	}
	data := buf.Bytes()
	// Signature (8 bytes) then IHDR: length(4) type(4) 13 bytes data crc(4).
	ihdrEnd := len(signature) + 8 + 13 + 4
	if len(data) < ihdrEnd || !bytes.Equal(data[:8], signature) {
		return errors.New("png: encoder produced an unexpected stream")
	}
	if _, err := w.Write(data[:ihdrEnd]); err != nil {
		return err
	}
	for _, c := range chunks {
		if _, err := w.Write(c); err != nil {
			return err
		}
	}
	_, err := w.Write(data[ihdrEnd:])
	return err
}

// textChunk returns e as a whole chunk (length, type, body, CRC): tEXt for Latin-1 text, iTXt
// for the rest.
func textChunk(e Entry) ([]byte, error) {
	key, err := keyword(e.Key)
	if err != nil {
		return nil, err
	}
	text := Clean(e.Text)
	body := append(key, 0)
	typ := "tEXt"
	if latin1(text) {
		for _, r := range text {
			body = append(body, byte(r))
		}
	} else {
		// iTXt: keyword \0 compression-flag(0) method(0) language-tag \0 translated-keyword \0 text
		typ = "iTXt"
		body = append(body, 0, 0, 0, 0)
		body = append(body, text...)
	}
	return chunk(typ, body), nil
}

// keyword returns key in Latin-1, or an error naming the PNG rule it breaks: 1-79 printable
// Latin-1 characters (32-126, 161-255), with no leading, trailing or consecutive spaces.
func keyword(key string) ([]byte, error) {
	var out []byte
	for _, r := range key {
		if !(r >= 32 && r <= 126 || r >= 161 && r <= 255) {
			return nil, fmt.Errorf("png: text keyword %q: %q is not a printable Latin-1 character", key, r)
		}
		out = append(out, byte(r))
	}
	switch {
	case len(out) == 0 || len(out) > 79:
		return nil, fmt.Errorf("png: text keyword %q must be 1 to 79 characters", key)
	case out[0] == ' ' || out[len(out)-1] == ' ' || bytes.Contains(out, []byte("  ")):
		return nil, fmt.Errorf("png: text keyword %q has a leading, trailing or double space", key)
	}
	return out, nil
}

// latin1 reports whether every character of the valid UTF-8 text s is in Latin-1.
func latin1(s string) bool {
	for _, r := range s {
		if r > 0xff {
			return false
		}
	}
	return true
}

func chunk(typ string, body []byte) []byte {
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 12+len(body)), uint32(len(body)))
	out = append(out, typ...)
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(out[4:]))
}

// Read returns the tEXt and iTXt (uncompressed) chunks of a PNG stream, in file order. Keywords
// are read as Latin-1 and texts as [Clean] makes them (tEXt as Latin-1, iTXt as UTF-8), so
// what any writer put there comes back as valid UTF-8 without NUL.
func Read(r io.Reader) ([]Entry, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(data, signature) {
		return nil, errors.New("png: not a PNG file")
	}
	var out []Entry
	for p := len(signature); p+12 <= len(data); {
		n := binary.BigEndian.Uint32(data[p:])
		if uint64(n) > uint64(len(data)-p-12) {
			return nil, errors.New("png: truncated chunk")
		}
		typ := string(data[p+4 : p+8])
		body := data[p+8 : p+8+int(n)]
		switch typ {
		case "tEXt":
			k, v, _ := bytes.Cut(body, []byte{0})
			out = append(out, Entry{fromLatin1(k), Clean(fromLatin1(v))})
		case "iTXt":
			k, rest, _ := bytes.Cut(body, []byte{0})
			if len(rest) >= 2 && rest[0] == 0 {
				_, rest, _ = bytes.Cut(rest[2:], []byte{0}) // language tag
				_, text, _ := bytes.Cut(rest, []byte{0})    // translated keyword
				out = append(out, Entry{fromLatin1(k), Clean(string(text))})
			}
		case "IEND":
			return out, nil
		}
		p += 12 + int(n)
	}
	return out, nil
}

// fromLatin1 decodes Latin-1 bytes: each byte is the code point of the same value.
func fromLatin1(b []byte) string {
	runes := make([]rune, len(b))
	for i, c := range b {
		runes[i] = rune(c)
	}
	return string(runes)
}
