// Package models runs ONNX models through ONNX Runtime for the rest of fksteer.
//
// It owns everything that touches the runtime: finding and loading the shared library (one
// environment per process), session options and execution providers, and sessions whose inputs and
// outputs are described by the model's own metadata. Callers hand float32 and int64 data to a
// prepared [Call]; the call converts it to whatever element type the model declares (float32,
// float16, int64, int32), so differently exported models work without code changes. Tensors stay
// plain []float32 slices with a shape: there is no second tensor framework.
//
// models knows nothing about diffusion, rewards or steering. cgo stays in this package and its
// subpackages, so the algorithmic packages build and test without the library.
package models
