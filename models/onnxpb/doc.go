// Package onnxpb holds the Go types of the ONNX protobuf schema (onnx.proto3, IR version 8),
// generated with protoc-gen-go. fksteer uses them to write the ONNX graphs it builds itself:
// the built-in glyphs model and the synthetic test models.
//
// Regenerate with `go generate ./models/onnxpb` (needs protoc and protoc-gen-go).
package onnxpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative onnx.proto3
