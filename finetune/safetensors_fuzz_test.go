package finetune_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/finetune"
)

// FuzzParseSafetensors feeds arbitrary bytes to the safetensors reader (seeds: testdata/fuzz/
// FuzzParseSafetensors). Properties: no panic; every error wraps ErrMalformed; an accepted
// file's tensors, in file order, are exactly its data part (the reader reads neither past the
// file nor around a gap); their values decode; every truncation of it is an error; and writing
// its tensors back gives a file that reads as the same tensors.
func FuzzParseSafetensors(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := finetune.ParseSafetensors(data)
		if err != nil {
			if !errors.Is(err, finetune.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		checkParsed(t, data, s)
		var buf bytes.Buffer
		if _, err := finetune.WriteSafetensors(&buf, s.Tensors, s.Metadata); err != nil {
			t.Fatalf("writing back an accepted file: %v", err)
		}
		again, err := finetune.ParseSafetensors(buf.Bytes())
		if err != nil {
			t.Fatalf("reading back what was written: %v", err)
		}
		sameTensors(t, s, again)
	})
}

// FuzzSafetensorsTruncated builds a valid file from the fuzzer's bytes (a list of tensors of
// every dtype, scalars and empty ones included, and metadata), writes it, and checks that it
// reads back as written (metadata as JSON carries it) and that every truncation of it is an
// error.
func FuzzSafetensorsTruncated(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec []byte, meta string) {
		tensors := tensorsFrom(spec)
		var metadata map[string]string
		if meta != "" {
			metadata = map[string]string{"m": meta}
		}
		var buf bytes.Buffer
		if _, err := finetune.WriteSafetensors(&buf, tensors, metadata); err != nil {
			t.Fatalf("write: %v", err)
		}
		data := buf.Bytes()
		s, err := finetune.ParseSafetensors(data)
		if err != nil {
			t.Fatalf("reading what was written: %v", err)
		}
		checkParsed(t, data, s)
		// The header is JSON: invalid UTF-8 in metadata reads back as U+FFFD, as encoding/json writes it.
		if len(s.Tensors) != len(tensors) || meta != "" && s.Metadata["m"] != jsonString(meta) {
			t.Fatalf("read %d tensors and metadata %q, wrote %d and %q", len(s.Tensors), s.Metadata, len(tensors), meta)
		}
		for _, want := range tensors {
			got, ok := s.Tensor(want.Name)
			if !ok || got.Dtype != want.Dtype || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("tensor %s: read %+v, wrote %+v", want.Name, got, want)
			}
		}
	})
}

// jsonString is s as it reads back from JSON.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	var out string
	json.Unmarshal(b, &out)
	return out
}

// tensorsFrom turns bytes into up to 8 tensors: per tensor a dtype byte, a rank byte (0..3) and
// one byte per dimension (0..4); the elements' bytes are the spec's own bytes, repeated.
func tensorsFrom(spec []byte) []finetune.Tensor {
	next := func() int {
		if len(spec) == 0 {
			return 0
		}
		b := spec[0]
		spec = spec[1:]
		return int(b)
	}
	var out []finetune.Tensor
	for i := 0; len(spec) > 0 && i < 8; i++ {
		dtype := []finetune.Dtype{finetune.F32, finetune.F16, finetune.I64}[next()%3]
		shape := make([]int, next()%4)
		n := 1
		for j := range shape {
			shape[j] = next() % 5
			n *= shape[j]
		}
		data := make([]byte, n*dtype.Size())
		for j := range data {
			data[j] = byte(next() + j)
		}
		out = append(out, finetune.Tensor{Name: fmt.Sprintf("t%d", i), Dtype: dtype, Shape: shape, Data: data})
	}
	return out
}

// checkParsed checks what ParseSafetensors accepted from data: the tensors tile the data part
// in file order, values decode to one per element, and no truncation of data parses.
func checkParsed(t *testing.T, data []byte, s *finetune.Safetensors) {
	t.Helper()
	n := binary.LittleEndian.Uint64(data)
	body := data[8+n:]
	var tiled []byte
	for _, ts := range s.Tensors {
		if cap(ts.Data) != len(ts.Data) {
			t.Fatalf("tensor %s: data of %d bytes can reach %d more of the file", ts.Name, len(ts.Data), cap(ts.Data)-len(ts.Data))
		}
		tiled = append(tiled, ts.Data...)
		if got, ok := s.Tensor(ts.Name); !ok || got.Name != ts.Name {
			t.Fatalf("tensor %s is not found by name", ts.Name)
		}
		var err error
		var values int
		switch ts.Dtype {
		case finetune.I64:
			var v []int64
			v, err = ts.Int64()
			values = len(v)
		default:
			var v []float32
			v, err = ts.Float32()
			values = len(v)
		}
		if err != nil || values != ts.Len() {
			t.Fatalf("tensor %s %s %v: %d values of %d, %v", ts.Name, ts.Dtype, ts.Shape, values, ts.Len(), err)
		}
	}
	if !bytes.Equal(tiled, body) {
		t.Fatalf("tensors hold %d bytes that are not the file's %d data bytes", len(tiled), len(body))
	}
	// Every prefix up to 1 KiB, then a spread of longer ones and the last 64.
	for k := 0; k < len(data); k++ {
		if k > 1024 && k%97 != 0 && k < len(data)-64 {
			continue
		}
		if _, err := finetune.ParseSafetensors(data[:k]); err == nil {
			t.Fatalf("the first %d of %d bytes parse", k, len(data))
		}
	}
}

// sameTensors checks that b holds a's metadata and tensors (names, dtypes, shapes and bytes).
func sameTensors(t *testing.T, a, b *finetune.Safetensors) {
	t.Helper()
	if len(a.Metadata) != 0 || len(b.Metadata) != 0 {
		if !maps.Equal(a.Metadata, b.Metadata) {
			t.Fatalf("metadata %v read back as %v", a.Metadata, b.Metadata)
		}
	}
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors read back as %d", len(a.Tensors), len(b.Tensors))
	}
	for _, want := range a.Tensors {
		got, ok := b.Tensor(want.Name)
		if !ok || got.Dtype != want.Dtype || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("tensor %q: read back as %+v, was %+v", want.Name, got, want)
		}
	}
}
