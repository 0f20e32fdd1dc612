// Package testimages makes image files that tests feed to fksteer's image readers.
package testimages

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
)

// PNGBomb returns a PNG of under 100 bytes whose header claims w x h 8-bit RGB pixels: a valid
// IHDR, an IDAT of a few compressed zero bytes, IEND. A decoder that trusts the header allocates
// the whole image (1.2 GB at 20000x20000) before it finds the data short.
func PNGBomb(w, h uint32) []byte {
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, body []byte) {
		buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body))))
		buf.WriteString(typ)
		buf.Write(body)
		buf.Write(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(append([]byte(typ), body...))))
	}
	ihdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, w), h)
	chunk("IHDR", append(ihdr, 8, 2, 0, 0, 0)) // 8-bit RGB, no interlace
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, 64))
	zw.Close()
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return buf.Bytes()
}
