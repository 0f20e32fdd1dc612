package models

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// ElemType is the element type of a model input or output.
type ElemType int

// The element types a [Call] converts to and from.
const (
	Unsupported ElemType = iota
	Float32
	Float16
	Int64
	Int32
)

func (e ElemType) String() string {
	switch e {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case Int64:
		return "int64"
	case Int32:
		return "int32"
	}
	return "unsupported"
}

// IsFloat reports whether callers exchange the values as float32.
func (e ElemType) IsFloat() bool { return e == Float32 || e == Float16 }

func elemType(t ort.TensorElementDataType) ElemType {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return Float32
	case ort.TensorElementDataTypeFloat16:
		return Float16
	case ort.TensorElementDataTypeInt64:
		return Int64
	case ort.TensorElementDataTypeInt32:
		return Int32
	}
	return Unsupported
}

// TensorInfo describes one model input or output as the model itself declares it.
type TensorInfo struct {
	Name string
	Type ElemType
	// Dims holds the declared shape; -1 marks a dynamic dimension. An empty Dims is a scalar.
	Dims []int64
	// ONNXType is ONNX Runtime's own name of the element type, for messages about types
	// fksteer does not convert.
	ONNXType string
}

func (t TensorInfo) String() string {
	dims := make([]string, len(t.Dims))
	for i, d := range t.Dims {
		if d < 0 {
			dims[i] = "?"
		} else {
			dims[i] = fmt.Sprint(d)
		}
	}
	typ := t.Type.String()
	if t.Type == Unsupported {
		typ = t.ONNXType
	}
	return fmt.Sprintf("%s %s[%s]", t.Name, typ, strings.Join(dims, ","))
}

// Session is one loaded ONNX model. Its Inputs and Outputs come from the model's metadata.
// A Session is safe for concurrent use by several Calls (ONNX Runtime's Run is thread-safe).
type Session struct {
	Path    string
	Inputs  []TensorInfo
	Outputs []TensorInfo
	// Provider is the execution provider the session runs on (never Auto).
	Provider Provider
	sess     *ort.DynamicAdvancedSession
}

// onProvider names the fix for a model that an accelerator cannot compile or run: its own
// kernels may lack an operator or a data type the CPU has.
func (s *Session) onProvider() string {
	if s.Provider == "" || s.Provider == CPU {
		return ""
	}
	return fmt.Sprintf(" on execution provider %s (if the model runs on the CPU, it is the provider's: use --provider cpu, or provider=cpu in the reward spec for a reward's model)", s.Provider)
}

// Open loads the ONNX model at path. [Init] must have succeeded first. A missing file or a file
// that is not an ONNX model gets an error that says so.
func Open(path string, opts ...Option) (*Session, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("load model: %s does not exist", path)
		}
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return open(path, nil, opts)
}

// OpenBytes loads an ONNX model held in memory; name is used in messages.
func OpenBytes(name string, model []byte, opts ...Option) (*Session, error) {
	return open(name, model, opts)
}

func open(path string, data []byte, opts []Option) (*Session, error) {
	if LibraryPath() == "" {
		return nil, fmt.Errorf("load model %s: ONNX Runtime is not initialised (call models.Init)", path)
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	so, err := o.sessionOptions()
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	defer so.Destroy()

	var ins, outs []ort.InputOutputInfo
	if data == nil {
		ins, outs, err = ort.GetInputOutputInfoWithOptions(path, so)
	} else {
		ins, outs, err = ort.GetInputOutputInfoWithONNXData(data)
	}
	s := &Session{Path: path, Inputs: infos(ins), Outputs: infos(outs), Provider: o.Provider}
	if err != nil {
		// Reading the metadata builds a session with the provider's options, so an accelerator
		// that refuses the model fails here, not only on a bad file.
		if hint := s.onProvider(); hint != "" {
			return nil, fmt.Errorf("load model %s%s: %w", path, hint, err)
		}
		return nil, fmt.Errorf("load model %s: not a valid ONNX model (or one this ONNX Runtime %s cannot read): %w", path, RuntimeVersion, err)
	}
	inNames, outNames := names(s.Inputs), names(s.Outputs)
	if data == nil {
		s.sess, err = ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	} else {
		s.sess, err = ort.NewDynamicAdvancedSessionWithONNXData(data, inNames, outNames, so)
	}
	if err != nil {
		return nil, fmt.Errorf("load model %s%s: %w", path, s.onProvider(), err)
	}
	return s, nil
}

func infos(in []ort.InputOutputInfo) []TensorInfo {
	out := make([]TensorInfo, len(in))
	for i, x := range in {
		out[i] = TensorInfo{Name: x.Name, Type: elemType(x.DataType), Dims: slices.Clone([]int64(x.Dimensions)), ONNXType: x.DataType.String()}
	}
	return out
}

func names(ts []TensorInfo) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// Input returns the named input's description.
func (s *Session) Input(name string) (TensorInfo, bool) { return find(s.Inputs, name) }

// Output returns the named output's description.
func (s *Session) Output(name string) (TensorInfo, bool) { return find(s.Outputs, name) }

func find(ts []TensorInfo, name string) (TensorInfo, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// MissingTensorError reports that a configuration named a tensor the model does not have.
type MissingTensorError struct {
	Model, Kind, Name string
	Have              []string
}

func (e *MissingTensorError) Error() string {
	return fmt.Sprintf("model %s has no %s named %q (it has: %s); fix the name in the manifest or configuration",
		e.Model, e.Kind, e.Name, strings.Join(e.Have, ", "))
}

// RequireInput returns the named input or a [MissingTensorError] listing the real ones.
func (s *Session) RequireInput(name string) (TensorInfo, error) {
	if t, ok := s.Input(name); ok {
		return t, nil
	}
	return TensorInfo{}, &MissingTensorError{Model: s.Path, Kind: "input", Name: name, Have: names(s.Inputs)}
}

// RequireOutput returns the named output or a [MissingTensorError] listing the real ones.
func (s *Session) RequireOutput(name string) (TensorInfo, error) {
	if t, ok := s.Output(name); ok {
		return t, nil
	}
	return TensorInfo{}, &MissingTensorError{Model: s.Path, Kind: "output", Name: name, Have: names(s.Outputs)}
}

// Close releases the session. Calls made from it must be closed first.
func (s *Session) Close() error {
	if s == nil || s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	return err
}
