// Package pngtext encodes PNG images with text chunks (such as the "parameters" chunk in which
// diffusion tools record prompt and settings) and reads those chunks back. The standard library's
// image/png neither writes nor exposes them.
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
	"unicode/utf8"
)

// Entry is one text chunk: a keyword (1-79 Latin-1 characters) and its text.
type Entry struct {
	Key, Text string
}

var signature = []byte("\x89PNG\r\n\x1a\n")

// Encode writes img as PNG with the given text chunks placed right after the header, so readers
// that stop early still find them. Text that is not Latin-1 goes into an iTXt (UTF-8) chunk.
// It compresses as much as it can (png.BestCompression).
func Encode(w io.Writer, img image.Image, entries []Entry) error {
	return EncodeLevel(w, img, entries, png.BestCompression)
}

// EncodeLevel is Encode with the given compression level, for large images where the best
// compression costs more time than its bytes are worth.
func EncodeLevel(w io.Writer, img image.Image, entries []Entry, level png.CompressionLevel) error {
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
	for _, e := range entries {
		if err := writeText(w, e); err != nil {
			return err
		}
	}
	_, err := w.Write(data[ihdrEnd:])
	return err
}

func writeText(w io.Writer, e Entry) error {
	if len(e.Key) == 0 || len(e.Key) > 79 {
		return fmt.Errorf("png: text keyword %q must be 1 to 79 characters", e.Key)
	}
	var body []byte
	typ := "tEXt"
	if latin1(e.Text) {
		body = append([]byte(e.Key), 0)
		for _, r := range e.Text {
			body = append(body, byte(r))
		}
	} else {
		// iTXt: keyword \0 compression-flag(0) method(0) language-tag \0 translated-keyword \0 text
		typ = "iTXt"
		body = append([]byte(e.Key), 0, 0, 0, 0, 0)
		body = append(body, e.Text...)
	}
	return writeChunk(w, typ, body)
}

func latin1(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r > 0xff {
			return false
		}
	}
	return true
}

func writeChunk(w io.Writer, typ string, body []byte) error {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(body)))
	copy(hdr[4:], typ)
	crc := crc32.NewIEEE()
	crc.Write(hdr[4:])
	crc.Write(body)
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], crc.Sum32())
	for _, b := range [][]byte{hdr[:], body, tail[:]} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Read returns the tEXt and iTXt (uncompressed) chunks of a PNG stream, in file order.
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
		n := int(binary.BigEndian.Uint32(data[p:]))
		typ := string(data[p+4 : p+8])
		if p+12+n > len(data) {
			return nil, errors.New("png: truncated chunk")
		}
		body := data[p+8 : p+8+n]
		switch typ {
		case "tEXt":
			k, v, _ := bytes.Cut(body, []byte{0})
			runes := make([]rune, len(v))
			for i, b := range v {
				runes[i] = rune(b)
			}
			out = append(out, Entry{string(k), string(runes)})
		case "iTXt":
			k, rest, _ := bytes.Cut(body, []byte{0})
			if len(rest) >= 2 && rest[0] == 0 {
				_, rest, _ = bytes.Cut(rest[2:], []byte{0}) // language tag
				_, text, _ := bytes.Cut(rest, []byte{0})    // translated keyword
				out = append(out, Entry{string(k), string(text)})
			}
		case "IEND":
			return out, nil
		}
		p += 12 + n
	}
	return out, nil
}
