package glyphs

import (
	"github.com/fksteer/fksteer/internal/atomicfile"

	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/fksteer/fksteer/models/onnxgraph"
)

// The denoiser's inputs and output.
const (
	InputX     = "x"     // float32 [batch, 3, 32, 32]: x_t
	InputT     = "t"     // float32 [batch]: time in [0, 1], 1 is pure noise
	InputPrior = "prior" // float32 [batch, M]: log prior weights, from Selection.LogPrior
	OutputX0   = "x0"    // float32 [batch, 3, 32, 32]: E[x0 | x_t]
)

// Opset is the ONNX operator set the denoiser uses.
const Opset = 17

const (
	modelDir   = "glyphs"     // folder under the cache directory
	modelFile  = "model.onnx" // file name inside the hash folder
	hashDigits = 16           // hex digits of the SHA-256 naming the hash folder
)

// BuildDenoiser returns the ONNX model of the exact denoiser of d (see the package
// documentation). For each batch row it computes
//
//	t'     = max(t, MinT)
//	logits = prior + ((1-t') <x, x_m> - (1-t')^2 ||x_m||^2 / 2) / t'^2     (<x, x_m> by Gemm)
//	x0     = softmax(logits) · images
//
// in float64 between a Cast of the inputs and a Cast of the output. Float32 is not enough: the
// two terms of the numerator are in the thousands while the logits that matter differ by about
// one, and dividing by t'^2 magnifies their rounding, so near a tie between two images at
// t = 0.2 a float32 graph is off by about 3e-3. The images are stored once, as a float32
// [M, 3072] initializer (exact: every value is (2p-255)/255 rounded to float32 when rendered),
// and cast to float64 in the graph together with their squared norms; ONNX Runtime folds both
// when it loads the session. The model is about 12 MB and its bytes are deterministic.
func BuildDenoiser(d *Dataset) ([]byte, error) {
	m := int64(d.Len())
	g := onnxgraph.New("glyphs", Opset)
	g.Doc("fksteer glyphs: exact posterior-mean denoiser E[x0 | x_t] of a prompt-weighted mixture of " +
		strconv.FormatInt(m, 10) + " rendered 32x32 images; x_t = (1-t) x0 + t eps.")
	g.Meta("fksteer.model", "glyphs")
	g.Meta("fksteer.prediction", "sample")
	g.Meta("fksteer.time", "rectified-flow t in [0,1], x_t = (1-t) x0 + t eps, t=1 is noise")
	g.Meta("fksteer.images", strconv.FormatInt(m, 10))

	batch := onnxgraph.Sym("batch")
	x := g.Input(InputX, onnxgraph.Float32, batch, onnxgraph.Fixed(Channels), onnxgraph.Fixed(Side), onnxgraph.Fixed(Side))
	t := g.Input(InputT, onnxgraph.Float32, batch)
	prior := g.Input(InputPrior, onnxgraph.Float32, batch, onnxgraph.Fixed(m))
	images := g.Initializer("images", []int64{m, ImageLen}, d.Pixels())

	f64 := func(v string) string {
		return g.Op("Cast", []string{v}, onnxgraph.AttrInt("to", int64(onnxgraph.Float64)))
	}
	imgs := f64(images) // [M, D]
	halfNorms := g.Op("Mul", []string{g.Op("ReduceSumSquare", []string{imgs},
		onnxgraph.AttrInts("axes", 1), onnxgraph.AttrInt("keepdims", 0)), f64(g.Scalar(0.5))}) // [M]
	flat := g.Op("Reshape", []string{f64(x), g.Int64s(-1, ImageLen)})                             // [B, D]
	tc := g.Op("Unsqueeze", []string{f64(g.Op("Max", []string{t, g.Scalar(MinT)})), g.Int64s(1)}) // [B, 1]
	a := g.Op("Sub", []string{f64(g.Scalar(1)), tc})                                              // 1-t', [B, 1]
	dots := g.Op("Gemm", []string{flat, imgs}, onnxgraph.AttrInt("transB", 1))                    // [B, M]
	num := g.Op("Sub", []string{
		g.Op("Mul", []string{a, dots}),
		g.Op("Mul", []string{g.Op("Mul", []string{a, a}), halfNorms}),
	})
	logits := g.Op("Add", []string{f64(prior), g.Op("Div", []string{num, g.Op("Mul", []string{tc, tc})})})
	w := g.Op("Softmax", []string{logits}, onnxgraph.AttrInt("axis", -1))
	x0 := g.Op("Cast", []string{g.Op("MatMul", []string{w, imgs})}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32))) // [B, D]
	g.Node("Reshape", []string{x0, g.Op("Shape", []string{x})}, []string{OutputX0})
	g.Output(OutputX0, onnxgraph.Float32, batch, onnxgraph.Fixed(Channels), onnxgraph.Fixed(Side), onnxgraph.Fixed(Side))

	b, err := g.Marshal()
	if err != nil {
		return nil, fmt.Errorf("glyphs: build denoiser: %w", err)
	}
	return b, nil
}

// EnsureModel returns the path of the glyphs model under cacheDir, writing it on first use:
// <cacheDir>/glyphs/<first 16 hex digits of the model's SHA-256>/model.onnx. A file already
// there is reused when its SHA-256 is the model's, and replaced otherwise. The first call in a
// process builds the model once to learn its hash (tens of milliseconds); later calls only
// hash the file.
//
// The file appears atomically (written to a temporary file in the same folder, synced, renamed),
// so concurrent callers, in this process or others, never see or leave a partial model: each
// writes identical bytes and the last rename wins.
func EnsureModel(cacheDir string) (string, error) {
	sum, err := modelSum()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, modelDir, hex.EncodeToString(sum[:])[:hashDigits])
	path := filepath.Join(dir, modelFile)
	if fileSum(path) == sum {
		return path, nil
	}
	model, err := buildModel()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("glyphs: create model folder: %w", err)
	}
	if err := atomicfile.Write(path, model, 0o644); err != nil {
		// Another process may have won a race on a platform where renaming over a file fails
		// (Windows, when the file is open); its file is as good as ours.
		if fileSum(path) == sum {
			return path, nil
		}
		return "", fmt.Errorf("glyphs: write model: %w", err)
	}
	return path, nil
}

// buildModel builds the denoiser of the shared data set.
func buildModel() ([]byte, error) {
	d, err := Load()
	if err != nil {
		return nil, err
	}
	return BuildDenoiser(d)
}

// modelSum is the SHA-256 of the model, computed once per process: the bytes are deterministic,
// and keeping 12 MB alive just to compare files would waste memory.
var modelSum = sync.OnceValues(func() ([sha256.Size]byte, error) {
	model, err := buildModel()
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(model), nil
})

// fileSum is the SHA-256 of the file at path, or zero if it cannot be read.
func fileSum(path string) (sum [sha256.Size]byte) {
	f, err := os.Open(path)
	if err != nil {
		return sum
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum
	}
	h.Sum(sum[:0])
	return sum
}
