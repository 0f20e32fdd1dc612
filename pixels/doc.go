// Package pixels holds batches of decoded images as plain float32 data (Images) and the
// resampling fksteer applies to them. It is a leaf: no cgo, no ONNX Runtime, no I/O, so the
// packages that only compute on images (rewards' maths, the sampler's pure parts, the
// fine-tuning writers) can use it without the runtime library.
package pixels
