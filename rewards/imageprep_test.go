package rewards

import (
	"math"
	"slices"
	"testing"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

// TestResizeAntialiasWeights: halving 1 x 4 pixels with PIL's bilinear filter (a triangle of
// radius 2 source pixels): output 0 is centred at 1.0, so pixels 0, 1, 2 (centres 0.5, 1.5,
// 2.5) weigh 0.75, 0.75, 0.25 before normalising by 1.75; output 1 mirrors it.
func TestResizeAntialiasWeights(t *testing.T) {
	src := []float32{1, 2, 4, 8}
	dst := make([]float32, 2)
	resizeAntialias(dst, 1, 2, src, 1, 4, make([]float32, 2))
	want := []float64{(0.75*1 + 0.75*2 + 0.25*4) / 1.75, (0.25*2 + 0.75*4 + 0.75*8) / 1.75}
	for i := range want {
		if math.Abs(float64(dst[i])-want[i]) > 1e-6 {
			t.Errorf("output %d = %g, want %g", i, dst[i], want[i])
		}
	}
	// A constant image stays constant at any size; enlarging matches plain bilinear.
	flat := slices.Repeat([]float32{0.25}, 7*5)
	out := make([]float32, 3*11)
	resizeAntialias(out, 3, 11, flat, 7, 5, make([]float32, 7*11))
	for _, v := range out {
		if math.Abs(float64(v)-0.25) > 1e-6 {
			t.Fatalf("constant image resized to %v", out)
		}
	}
	small := []float32{0, 1, 2, 3}
	a, b := make([]float32, 36), make([]float32, 36)
	resizeAntialias(a, 6, 6, small, 2, 2, make([]float32, 12))
	pixels.ResizePlane(b, 6, 6, small, 2, 2)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6 {
			t.Fatalf("enlarging: antialiased %v != bilinear %v", a, b)
		}
	}
}

// TestImagePrepChannelsAndLayout: an RGB image whose channels are constant 0.2, 0.4, 0.6 fed
// to an NHWC model in BGR order with per-channel normalisation.
func TestImagePrepChannelsAndLayout(t *testing.T) {
	in := models.TensorInfo{Name: "x", Type: models.Float32, Dims: []int64{-1, 2, 2, 3}}
	p, err := newImagePrep(in, ImageOptions{BGR: true, Mean: []float64{0.1, 0.2, 0.3}, Std: []float64{0.5, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.opts.NHWC || !slices.Equal(p.shape(5), []int64{5, 2, 2, 3}) {
		t.Fatalf("layout NHWC %v, shape %v", p.opts.NHWC, p.shape(5))
	}
	img := pixels.NewImages(1, 3, 2, 2)
	for c, v := range []float32{0.2, 0.4, 0.6} {
		for j := range 4 {
			img.Pix[c*4+j] = v
		}
	}
	dst := make([]float32, 12)
	p.fill(dst, img)
	// Model channel 0 is blue (0.6): (0.6-0.1)/0.5 = 1; channel 1 green: (0.4-0.2)/1 = 0.2;
	// channel 2 red: (0.2-0.3)/2 = -0.05.
	want := []float64{1, 0.2, -0.05}
	for j, v := range dst {
		if math.Abs(float64(v)-want[j%3]) > 1e-6 {
			t.Fatalf("NHWC values %v, want pixels of %v", dst, want)
		}
	}
	// A grey model reads the BT.601 luma of an RGB image.
	grey := models.TensorInfo{Name: "x", Type: models.Float32, Dims: []int64{-1, 1, 2, 2}}
	if p, err = newImagePrep(grey, ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 4)
	p.fill(out, img)
	if luma := 0.299*0.2 + 0.587*0.4 + 0.114*0.6; math.Abs(float64(out[0])-luma) > 1e-6 {
		t.Errorf("grey value %g, want luma %g", out[0], luma)
	}
}

// TestImagePrepShorterSideCrop: Resize scales the shorter side and crops the centre. A 2 x 4
// image resized to shorter side 2 is unchanged, and the 2 x 2 model input is its columns 1, 2.
func TestImagePrepShorterSideCrop(t *testing.T) {
	in := models.TensorInfo{Name: "x", Type: models.Float32, Dims: []int64{-1, 1, 2, 2}}
	p, err := newImagePrep(in, ImageOptions{Resize: 2})
	if err != nil {
		t.Fatal(err)
	}
	img := pixels.Images{N: 1, C: 1, H: 2, W: 4, Pix: []float32{0, 1, 2, 3, 4, 5, 6, 7}}
	out := make([]float32, 4)
	p.fill(out, img)
	if !slices.Equal(out, []float32{1, 2, 5, 6}) {
		t.Errorf("centre crop %v, want [1 2 5 6]", out)
	}
	if _, err := newImagePrep(in, ImageOptions{Resize: 1}); err == nil {
		t.Error("a resize below the model's size was accepted")
	}
	dyn := models.TensorInfo{Name: "x", Type: models.Float32, Dims: []int64{-1, 3, -1, -1}}
	if _, err := newImagePrep(dyn, ImageOptions{}); err == nil {
		t.Error("a dynamic size without size= was accepted")
	}
	if p, err := newImagePrep(dyn, withDefaultSize(dyn, ImageOptions{}, 224)); err != nil || p.h != 224 || p.w != 224 {
		t.Errorf("default size: %v, %v", p, err)
	}
}

func TestParseImageOptions(t *testing.T) {
	o := newOptions("x")
	o.values = map[string][]string{"size": {"224x320"}, "norm": {"clip"}, "std": {"0.5"}, "order": {"bgr"}, "layout": {"nhwc"}, "antialias": {"no"}}
	got, err := parseImageOptions(o, ImageOptions{Antialias: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Height != 224 || got.Width != 320 || !slices.Equal(got.Mean, CLIPMean) || !slices.Equal(got.Std, []float64{0.5}) || !got.BGR || !got.NHWC || got.Antialias {
		t.Errorf("parsed %+v", got)
	}
	for key, bad := range map[string]string{"size": "0", "norm": "vgg", "mean": "0.5/x", "order": "grb", "layout": "chw", "resize": "-2"} {
		o := newOptions("x")
		o.values = map[string][]string{key: {bad}}
		if _, err := parseImageOptions(o, ImageOptions{}); err == nil {
			t.Errorf("%s=%s accepted", key, bad)
		}
	}
}

// TestResizeBicubicWeights: halving 1 x 4 pixels with PIL's bicubic filter (a = -0.5, radius
// 4 source pixels when halving): output 0 is centred at 1.0, so pixels 0..3 (centres 0.5 to
// 3.5, at distances 0.25, 0.25, 0.75, 1.25 in kernel units) weigh 0.8671875, 0.8671875,
// 0.2265625 and -0.0703125 before normalising by their sum, 1.890625; output 1 mirrors it.
// These are the coefficients of PIL's precompute_coeffs for the same sizes.
func TestResizeBicubicWeights(t *testing.T) {
	src := []float32{0.1, 0.2, 0.4, 0.8}
	dst := make([]float32, 2)
	resizeFiltered(dst, 1, 2, src, 1, 4, make([]float32, 2), bicubic)
	w := []float64{0.8671875, 0.8671875, 0.2265625, -0.0703125}
	want := []float64{
		(w[0]*0.1 + w[1]*0.2 + w[2]*0.4 + w[3]*0.8) / 1.890625,
		(w[3]*0.1 + w[2]*0.2 + w[1]*0.4 + w[0]*0.8) / 1.890625,
	}
	for i := range want {
		if math.Abs(float64(dst[i])-want[i]) > 1e-6 {
			t.Errorf("output %d = %g, want %g", i, dst[i], want[i])
		}
	}
	// Same size is the identity (the kernel is 1 at 0 and 0 at ±1, ±2), a constant image
	// stays constant, and the overshoot of a hard edge is clipped to [0, 1] as PIL's 8-bit
	// images are: a bilinear resize of the same edge never leaves [0, 1].
	same := make([]float32, 4)
	resizeFiltered(same, 2, 2, src, 2, 2, make([]float32, 4), bicubic)
	flat := slices.Repeat([]float32{0.25}, 7*5)
	out := make([]float32, 3*11)
	resizeFiltered(out, 3, 11, flat, 7, 5, make([]float32, 7*11), bicubic)
	for _, v := range out {
		if math.Abs(float64(v)-0.25) > 1e-6 {
			t.Fatalf("constant image resized to %v", out)
		}
	}
	if !slices.Equal(same, src) {
		t.Errorf("same-size bicubic resize = %v, want %v", same, src)
	}
	edge := []float32{0, 0, 0, 1, 1, 1}
	up := make([]float32, 12)
	resizeFiltered(up, 1, 12, edge, 1, 6, make([]float32, 12), bicubic)
	unclipped := bicubic
	unclipped.clip = false
	raw := make([]float32, 12)
	resizeFiltered(raw, 1, 12, edge, 1, 6, make([]float32, 12), unclipped)
	if slices.Min(raw) >= 0 || slices.Max(raw) <= 1 {
		t.Fatalf("the edge does not overshoot unclipped (%v): the test proves nothing", raw)
	}
	for i, v := range up {
		if want := min(max(raw[i], 0), 1); v != want {
			t.Errorf("enlarged edge %d = %g, want %g (clipped)", i, v, want)
		}
	}
}
