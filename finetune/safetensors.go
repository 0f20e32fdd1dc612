package finetune

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"

	"github.com/fksteer/fksteer/models"
)

// The safetensors format (https://github.com/huggingface/safetensors), as written and read here:
//
//	8 bytes   N, the header length, unsigned little-endian
//	N bytes   a JSON object: "__metadata__" (string to string) and, per tensor,
//	          {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
//	rest      the tensors' raw little-endian bytes; offsets are relative to the start of this part
//
// The writer pads the header with spaces to a multiple of 8 bytes and orders tensors by element
// size, widest first, so that every tensor starts at an offset aligned to its element size and
// can be viewed in place (torch.frombuffer, numpy.frombuffer). The reader checks what the
// reference implementation checks: known dtypes, sizes that match shapes, and offsets that tile
// the data part exactly, without gaps or overlaps.

// Dtype is a safetensors element type.
type Dtype string

// The element types fksteer writes.
const (
	F32 Dtype = "F32"
	F16 Dtype = "F16"
	I64 Dtype = "I64"
)

// Size returns the size of one element in bytes, or 0 for a dtype fksteer does not handle.
func (d Dtype) Size() int {
	switch d {
	case F32:
		return 4
	case F16:
		return 2
	case I64:
		return 8
	}
	return 0
}

// maxHeader bounds the header a reader accepts, as the reference implementation does (100 MB),
// so that a corrupt length cannot make it allocate without limit.
const maxHeader = 100 << 20

// metadataKey is the reserved header entry holding string metadata.
const metadataKey = "__metadata__"

// Tensor is one named tensor: raw little-endian bytes with their dtype and shape. A scalar has
// an empty shape and one element.
type Tensor struct {
	Name  string
	Dtype Dtype
	Shape []int
	Data  []byte
}

// Float32Tensor returns a float32 tensor holding a copy of v. It panics if v does not fill shape:
// that is a bug in the caller, and a tensor written with the wrong shape would mislead trainers.
func Float32Tensor(name string, shape []int, v []float32) Tensor {
	mustFit(name, shape, len(v))
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return Tensor{Name: name, Dtype: F32, Shape: slices.Clone(shape), Data: b}
}

// Float16Tensor returns v rounded to IEEE half precision (to nearest, ties to even; values beyond
// ±65504 become ±Inf). It panics if v does not fill shape.
func Float16Tensor(name string, shape []int, v []float32) Tensor {
	mustFit(name, shape, len(v))
	b := make([]byte, 2*len(v))
	models.EncodeFloat16(b, v)
	return Tensor{Name: name, Dtype: F16, Shape: slices.Clone(shape), Data: b}
}

// Int64Tensor returns an int64 tensor holding v. It panics if v does not fill shape.
func Int64Tensor(name string, shape []int, v []int64) Tensor {
	mustFit(name, shape, len(v))
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return Tensor{Name: name, Dtype: I64, Shape: slices.Clone(shape), Data: b}
}

func mustFit(name string, shape []int, n int) {
	if numel(shape) != n {
		panic(fmt.Sprintf("finetune: tensor %s of shape %v given %d values", name, shape, n))
	}
}

// numel is the number of elements of a shape (1 for a scalar); -1 if a dimension is negative or
// the product would pass math.MaxInt/8, where a byte count could overflow (the reference
// implementation also rejects a product that overflows on the way, even if a later size is 0).
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 || d > 0 && n > math.MaxInt/8/d {
			return -1
		}
		n *= d
	}
	return n
}

// Len returns the number of elements.
func (t Tensor) Len() int { return numel(t.Shape) }

// Float32 returns the values of an F32 or F16 tensor as float32.
func (t Tensor) Float32() ([]float32, error) {
	out := make([]float32, t.Len())
	switch t.Dtype {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case F16:
		models.DecodeFloat16(out, t.Data)
	default:
		return nil, fmt.Errorf("tensor %s is %s, not a float tensor", t.Name, t.Dtype)
	}
	return out, nil
}

// Int64 returns the values of an I64 tensor.
func (t Tensor) Int64() ([]int64, error) {
	if t.Dtype != I64 {
		return nil, fmt.Errorf("tensor %s is %s, not I64", t.Name, t.Dtype)
	}
	out := make([]int64, t.Len())
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return out, nil
}

// check reports a tensor the format cannot represent.
func (t Tensor) check() error {
	switch {
	case t.Name == "" || t.Name == metadataKey:
		return fmt.Errorf("tensor name %q is reserved or empty", t.Name)
	case t.Dtype.Size() == 0:
		return fmt.Errorf("tensor %s: unsupported dtype %q", t.Name, t.Dtype)
	case t.Len() < 0:
		return fmt.Errorf("tensor %s: negative or too large dimension in shape %v", t.Name, t.Shape)
	case t.Len()*t.Dtype.Size() != len(t.Data):
		return fmt.Errorf("tensor %s: %d bytes for %s shape %v (want %d)", t.Name, len(t.Data), t.Dtype, t.Shape, t.Len()*t.Dtype.Size())
	}
	return nil
}

// layout orders tensors for writing (widest elements first, otherwise as given) and returns the
// padded header.
func layout(tensors []Tensor, metadata map[string]string) ([]Tensor, []byte, error) {
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		if err := t.check(); err != nil {
			return nil, nil, err
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("tensor %s appears twice", t.Name)
		}
		seen[t.Name] = true
	}
	ordered := slices.Clone(tensors)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].Dtype.Size() > ordered[j].Dtype.Size() })

	// The header is built by hand so that entries follow the data order; JSON readers do not care,
	// but a person reading the header does.
	var h bytes.Buffer
	h.WriteByte('{')
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata)
		if err != nil {
			return nil, nil, err
		}
		h.WriteString(`"__metadata__":`)
		h.Write(m)
	}
	var off int64
	for i, t := range ordered {
		if i > 0 || len(metadata) > 0 {
			h.WriteByte(',')
		}
		name, _ := json.Marshal(t.Name)
		h.Write(name)
		h.WriteString(`:{"dtype":"` + string(t.Dtype) + `","shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		end := off + int64(len(t.Data))
		fmt.Fprintf(&h, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	return ordered, h.Bytes(), nil
}

// SafetensorsSize returns the exact size of the file [WriteSafetensors] would write.
func SafetensorsSize(tensors []Tensor, metadata map[string]string) (int64, error) {
	_, header, err := layout(tensors, metadata)
	if err != nil {
		return 0, err
	}
	n := int64(8 + len(header))
	for _, t := range tensors {
		n += int64(len(t.Data))
	}
	return n, nil
}

// WriteSafetensors writes tensors and metadata in the safetensors format and returns the number
// of bytes written. Names must be unique and every tensor's data must match its dtype and shape;
// nothing is written otherwise.
func WriteSafetensors(w io.Writer, tensors []Tensor, metadata map[string]string) (int64, error) {
	ordered, header, err := layout(tensors, metadata)
	if err != nil {
		return 0, fmt.Errorf("safetensors: %w", err)
	}
	var n int64
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	for _, b := range append([][]byte{lenBuf[:], header}, dataOf(ordered)...) {
		m, err := w.Write(b)
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("safetensors: %w", err)
		}
	}
	return n, nil
}

func dataOf(ts []Tensor) [][]byte {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		out[i] = t.Data
	}
	return out
}

// Safetensors is a parsed safetensors file.
type Safetensors struct {
	Metadata map[string]string
	// Tensors in file order; their Data alias the buffer the file was read from.
	Tensors []Tensor
	index   map[string]int
}

// Tensor returns the tensor called name.
func (s *Safetensors) Tensor(name string) (Tensor, bool) {
	i, ok := s.index[name]
	if !ok {
		return Tensor{}, false
	}
	return s.Tensors[i], true
}

// ReadSafetensorsFile reads and parses the safetensors file at path.
func ReadSafetensorsFile(path string) (*Safetensors, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseSafetensors(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ErrMalformed is wrapped by every error [ParseSafetensors] returns for bytes that are not a
// valid safetensors file.
var ErrMalformed = errors.New("not a valid safetensors file")

// ParseSafetensors parses a whole safetensors file held in memory. The tensors' Data alias data.
func ParseSafetensors(data []byte) (*Safetensors, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if len(data) < 8 {
		return nil, bad("%d bytes, shorter than the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > maxHeader || n > uint64(len(data)-8) {
		return nil, bad("header length %d does not fit a file of %d bytes", n, len(data))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &raw); err != nil {
		return nil, bad("header is not a JSON object: %v", err)
	}
	body := data[8+n:]
	s := &Safetensors{index: map[string]int{}}
	type entry struct {
		Dtype   Dtype    `json:"dtype"`
		Shape   []int    `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	type placed struct {
		begin int64
		t     Tensor
	}
	var all []placed
	for name, msg := range raw {
		if name == metadataKey {
			if err := json.Unmarshal(msg, &s.Metadata); err != nil {
				return nil, bad("__metadata__ is not a map of strings: %v", err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, bad("tensor %s: %v", name, err)
		}
		b, end := e.Offsets[0], e.Offsets[1]
		if b < 0 || end < b || end > int64(len(body)) {
			return nil, bad("tensor %s: offsets [%d, %d] outside the %d data bytes", name, b, end, len(body))
		}
		t := Tensor{Name: name, Dtype: e.Dtype, Shape: e.Shape, Data: body[b:end:end]}
		if t.Shape == nil {
			t.Shape = []int{}
		}
		if err := t.check(); err != nil {
			return nil, bad("%v", err)
		}
		all = append(all, placed{b, t})
	}
	// In file order; an empty tensor sorts before the tensor that starts where it lies, and
	// empty tensors at one offset by name.
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.begin != b.begin {
			return a.begin < b.begin
		}
		if len(a.t.Data) != len(b.t.Data) {
			return len(a.t.Data) < len(b.t.Data)
		}
		return a.t.Name < b.t.Name
	})
	var at int64
	for _, p := range all {
		if p.begin != at {
			return nil, bad("tensor %s starts at %d, expected %d (a gap or an overlap)", p.t.Name, p.begin, at)
		}
		at += int64(len(p.t.Data))
		s.index[p.t.Name] = len(s.Tensors)
		s.Tensors = append(s.Tensors, p.t)
	}
	if at != int64(len(body)) {
		return nil, bad("tensors cover %d of %d data bytes", at, len(body))
	}
	return s, nil
}
