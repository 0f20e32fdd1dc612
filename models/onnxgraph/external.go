package onnxgraph

import (
	"fmt"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/fksteer/fksteer/models/onnxpb"
)

// MarshalExternal serialises the model as Marshal does, but with the data of every initializer
// of at least minBytes bytes moved out of the model into data, which the caller saves as the
// file location beside the model file: ONNX external data, as onnx.save_model writes it with
// save_as_external_data and all_tensors_to_one_file (and torch.onnx for models over 2 GB, and
// Olive as weights.pb). Each moved initializer has data_location EXTERNAL and the external_data
// entries "location", "offset" and "length"; the tensors lie back to back in data in the
// order of the graph's initializers. Smaller initializers stay inline, as onnx's
// size_threshold keeps them (its default is 1024 bytes).
//
// location must be a local relative path (such as "model.onnx_data" or "weights.pb"), because
// ONNX Runtime resolves it against the folder of the model file; a model with external data
// must therefore be loaded from a path, not from memory. The graph itself is not changed, and
// the bytes are deterministic, as with Marshal. If no initializer is large enough, data is
// empty and the model is the one Marshal returns.
func (g *Graph) MarshalExternal(location string, minBytes int) (model, data []byte, err error) {
	if location == "" || !filepath.IsLocal(location) {
		return nil, nil, fmt.Errorf("graph %q: external data location %q is not a local relative path", g.g.Name, location)
	}
	m, err := g.Model()
	if err != nil {
		return nil, nil, err
	}
	m = proto.Clone(m).(*onnxpb.ModelProto) // the graph keeps its inline initializers
	for _, t := range m.Graph.Initializer {
		if len(t.RawData) == 0 || len(t.RawData) < minBytes {
			continue
		}
		t.DataLocation = onnxpb.TensorProto_EXTERNAL
		t.ExternalData = []*onnxpb.StringStringEntryProto{
			{Key: "location", Value: location},
			{Key: "offset", Value: strconv.Itoa(len(data))},
			{Key: "length", Value: strconv.Itoa(len(t.RawData))},
		}
		data = append(data, t.RawData...)
		t.RawData = nil
	}
	model, err = proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("graph %q: marshal: %w", g.g.Name, err)
	}
	return model, data, nil
}
