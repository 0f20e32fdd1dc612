package finetune_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/finetune"
)

// TestSafetensorsRoundTrip writes every dtype (including a scalar, an empty tensor and special
// float values) with metadata and reads it back: names, dtypes, shapes and bytes must be equal,
// the size must be what SafetensorsSize predicted, and every tensor must start at an offset
// aligned to its element size.
func TestSafetensorsRoundTrip(t *testing.T) {
	inf := float32(math.Inf(1))
	in := []finetune.Tensor{
		finetune.Float16Tensor("a/half", []int{2, 3}, []float32{0, 1, -2.5, 65504, 1e-8, inf}),
		finetune.Float32Tensor("a/f32", []int{3}, []float32{1.5, float32(math.NaN()), -inf}),
		finetune.Int64Tensor("b/index", []int{2, 2}, []int64{0, -1, math.MaxInt64, math.MinInt64}),
		finetune.Float32Tensor("scalar", []int{}, []float32{42}),
		finetune.Float32Tensor("empty", []int{0, 4}, nil),
		finetune.Float16Tensor("odd", []int{1}, []float32{3}), // 2 bytes: what follows must not misalign
		finetune.Int64Tensor("z", []int{1}, []int64{7}),
	}
	meta := map[string]string{"format": "test", "quote": `a "b" \ c`}
	var buf bytes.Buffer
	n, err := finetune.WriteSafetensors(&buf, in, meta)
	if err != nil {
		t.Fatal(err)
	}
	size, err := finetune.SafetensorsSize(in, meta)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || size != n {
		t.Fatalf("wrote %d bytes (reported %d, predicted %d)", buf.Len(), n, size)
	}
	headerLen := binary.LittleEndian.Uint64(buf.Bytes())
	if headerLen%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", headerLen)
	}
	s, err := finetune.ParseSafetensors(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if s.Metadata["format"] != "test" || s.Metadata["quote"] != meta["quote"] {
		t.Errorf("metadata %v", s.Metadata)
	}
	if len(s.Tensors) != len(in) {
		t.Fatalf("read %d tensors, wrote %d", len(s.Tensors), len(in))
	}
	data := buf.Bytes()[8+headerLen:]
	for _, want := range in {
		got, ok := s.Tensor(want.Name)
		if !ok {
			t.Fatalf("tensor %s missing", want.Name)
		}
		if got.Dtype != want.Dtype || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: read %s %v %x, wrote %s %v %x", want.Name, got.Dtype, got.Shape, got.Data, want.Dtype, want.Shape, want.Data)
		}
		if len(got.Data) > 0 {
			off := cap(data) - cap(got.Data)
			if off%want.Dtype.Size() != 0 {
				t.Errorf("%s starts at data offset %d, not aligned to %d bytes", want.Name, off, want.Dtype.Size())
			}
		}
	}
	half, _ := s.Tensor("a/half")
	v, err := half.Float32()
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 1, -2.5, 65504, 0, inf}; !slices.Equal(v, want) {
		t.Errorf("float16 values %v, want %v", v, want)
	}
	idx, _ := s.Tensor("b/index")
	if got, _ := idx.Int64(); !slices.Equal(got, []int64{0, -1, math.MaxInt64, math.MinInt64}) {
		t.Errorf("int64 values %v", got)
	}
}

// TestSafetensorsRejectsMalformedFiles: truncations, bad offsets and overlapping tensors are
// errors wrapping ErrMalformed, never a panic or a silently wrong tensor.
func TestSafetensorsRejectsMalformedFiles(t *testing.T) {
	file := func(header string, data int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		return append(append(b, header...), make([]byte, data)...)
	}
	cases := map[string][]byte{
		"short":         {1, 2, 3},
		"huge header":   binary.LittleEndian.AppendUint64(nil, 1<<40),
		"not json":      file("{nope", 0),
		"unknown dtype": file(`{"x":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}`, 1),
		"size mismatch": file(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4),
		"out of range":  file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 4),
		"gap":           file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		"overlap":       file(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		"trailing":      file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8),
		"bad metadata":  file(`{"__metadata__":{"a":1}}`, 0),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := finetune.ParseSafetensors(data); !errors.Is(err, finetune.ErrMalformed) {
				t.Errorf("got %v, want an ErrMalformed error", err)
			}
		})
	}
	if _, err := finetune.WriteSafetensors(&bytes.Buffer{}, []finetune.Tensor{
		finetune.Float32Tensor("x", []int{1}, []float32{1}), finetune.Float32Tensor("x", []int{1}, []float32{2}),
	}, nil); err == nil {
		t.Error("two tensors named x were written")
	}
}
