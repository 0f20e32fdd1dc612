package rewards

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

// Normalisations of common vision models, per RGB channel, for values in [0, 1].
var (
	// ImageNetMean and ImageNetStd are torchvision's (DINOv2, most classifiers).
	ImageNetMean = []float64{0.485, 0.456, 0.406}
	ImageNetStd  = []float64{0.229, 0.224, 0.225}
	// CLIPMean and CLIPStd are OpenAI CLIP's (CLIP score, PickScore, HPSv2, ImageReward's BLIP).
	CLIPMean = []float64{0.48145466, 0.4578275, 0.40821073}
	CLIPStd  = []float64{0.26862954, 0.26130258, 0.27577711}
)

// ImageOptions say how a batch of images in [0, 1] becomes a vision model's float input. In
// order: each model channel is taken from the image (grey images feed every channel; a
// one-channel model gets an RGB image's BT.601 luma; BGR swaps red and blue), centre-cropped to
// Crop, resized (shorter side to Resize, then centre-cropped to the model's size; or stretched
// to it), and normalised per channel.
type ImageOptions struct {
	// Height and Width are the model's input size where the model leaves it dynamic; where it
	// declares one, that one is used and these must be 0 or agree.
	Height, Width int
	// Crop, when positive, centre-crops the source image to Crop x Crop pixels first.
	Crop int
	// Resize, when positive, scales the image so its shorter side is Resize pixels and then
	// centre-crops the model's size (the CLIP and DINOv2 processors' "shortest_edge" resize
	// and "crop_size"); it must be at least the model's height and width. 0 stretches the
	// image to the model's size.
	Resize int
	// Mean and Std normalise values v in [0, 1] as (v - Mean[c]) / Std[c], per model channel in
	// the model's channel order; a single value applies to every channel. Empty Mean means 0
	// and empty Std 1.
	Mean, Std []float64
	// BGR feeds the channels in blue, green, red order.
	BGR bool
	// Antialias filters when shrinking, as PIL does; without it resizing samples bilinearly,
	// as OpenCV's INTER_LINEAR does (PaddleOCR, most MNIST pipelines).
	Antialias bool
	// Bicubic resizes with PIL's bicubic filter (torchvision's InterpolationMode.BICUBIC on a
	// PIL image, as ImageReward's preprocessing does): antialiased whatever Antialias says,
	// and clipped to [0, 1] after each pass, as PIL's 8-bit images are.
	Bicubic bool
	// NHWC says the model takes [batch, H, W, C]; the default is [batch, C, H, W]. Where a model
	// declares a channel count of 1 or 3 in exactly one of the two places, that decides.
	NHWC bool
}

// normPresets are the named normalisations the norm= option accepts.
var normPresets = map[string][2][]float64{
	"imagenet": {ImageNetMean, ImageNetStd},
	"clip":     {CLIPMean, CLIPStd},
	"half":     {{0.5}, {0.5}}, // [0, 1] -> [-1, 1]
	"none":     {{0}, {1}},
}

// imageOptionKeys are the keys parseImageOptions reads, for the Register calls of the rewards
// that take image options.
var imageOptionKeys = []string{"size", "crop", "resize", "norm", "mean", "std", "order", "antialias", "layout"}

// parseImageOptions reads the image options of a spec on top of def: size=N or HxW, crop=N,
// resize=N, norm=imagenet|clip|half|none, mean=a/b/c, std=a/b/c, order=rgb|bgr,
// antialias=true|false, layout=nchw|nhwc.
func parseImageOptions(o *Options, def ImageOptions) (ImageOptions, error) {
	res := def
	fail := func(format string, args ...any) (ImageOptions, error) {
		return ImageOptions{}, fmt.Errorf("reward %s: "+format, append([]any{o.reward}, args...)...)
	}
	if s := o.String("size", ""); s != "" {
		hs, ws, square := strings.Cut(strings.ToLower(s), "x")
		if !square {
			ws = hs
		}
		h, err1 := strconv.Atoi(hs)
		w, err2 := strconv.Atoi(ws)
		if err1 != nil || err2 != nil || h <= 0 || w <= 0 {
			return fail("option size=%q is not N or HxW with positive N, H and W", s)
		}
		res.Height, res.Width = h, w
	}
	var err error
	if res.Crop, err = o.Int("crop", def.Crop); err != nil {
		return ImageOptions{}, err
	}
	if res.Resize, err = o.Int("resize", def.Resize); err != nil {
		return ImageOptions{}, err
	}
	if res.Crop < 0 || res.Resize < 0 {
		return fail("crop and resize must be 0 (off) or positive")
	}
	if n := o.String("norm", ""); n != "" {
		p, ok := normPresets[n]
		if !ok {
			return fail("option norm=%q is not imagenet, clip, half or none (or give mean=a/b/c,std=a/b/c)", n)
		}
		res.Mean, res.Std = p[0], p[1]
	}
	for _, kv := range []struct {
		key string
		dst *[]float64
	}{{"mean", &res.Mean}, {"std", &res.Std}} {
		s := o.String(kv.key, "")
		if s == "" {
			continue
		}
		var vals []float64
		for _, f := range strings.Split(s, "/") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return fail("option %s=%q is not a number or a list a/b/c of numbers", kv.key, s)
			}
			vals = append(vals, v)
		}
		*kv.dst = vals
	}
	switch order := o.String("order", ""); order {
	case "":
	case "rgb":
		res.BGR = false
	case "bgr":
		res.BGR = true
	default:
		return fail("option order=%q is not rgb or bgr", order)
	}
	if res.Antialias, err = o.Bool("antialias", def.Antialias); err != nil {
		return ImageOptions{}, err
	}
	switch layout := o.String("layout", ""); layout {
	case "":
	case "nchw":
		res.NHWC = false
	case "nhwc":
		res.NHWC = true
	default:
		return fail("option layout=%q is not nchw or nhwc", layout)
	}
	return res, nil
}

// imagePrep fills a vision model's input from images, as its ImageOptions say. Once built (and
// its options settled) it is safe for concurrent use: each fill borrows its own scratch planes.
type imagePrep struct {
	opts    ImageOptions
	c, h, w int
	mean    []float64
	std     []float64
	// scratch keeps *prepScratch between fills, so that the images of every step reuse planes.
	scratch sync.Pool
}

// prepScratch holds the planes one image passes through: channel mapping, crop, shorter-side
// resize, antialias pass, model size.
type prepScratch struct {
	luma, cropped, scaled, tmp, plane []float32
}

// newImagePrep checks that in is a float image input ([batch, C, H, W] or [batch, H, W, C]) and
// resolves its size from the model or the options.
func newImagePrep(in models.TensorInfo, o ImageOptions) (*imagePrep, error) {
	if len(in.Dims) != 4 || !in.Type.IsFloat() {
		return nil, fmt.Errorf("input %s must be a float image [batch, C, H, W] (or [batch, H, W, C])", in)
	}
	nhwc := o.NHWC
	isC := func(d int64) bool { return d == 1 || d == 3 }
	if isC(in.Dims[1]) != isC(in.Dims[3]) {
		nhwc = isC(in.Dims[3])
	}
	cd, hd, wd := in.Dims[1], in.Dims[2], in.Dims[3]
	if nhwc {
		hd, wd, cd = in.Dims[1], in.Dims[2], in.Dims[3]
	}
	if cd <= 0 {
		return nil, fmt.Errorf("input %s has a dynamic channel count; fksteer needs 1 or 3", in)
	}
	size := func(dim int64, opt int, what string) (int, error) {
		switch {
		case dim > 0 && opt > 0 && int64(opt) != dim:
			return 0, fmt.Errorf("input %s has %s %d, but size= asks for %d", in, what, dim, opt)
		case dim > 0:
			return int(dim), nil
		case opt > 0:
			return opt, nil
		}
		return 0, fmt.Errorf("input %s has a dynamic %s; give the model's input size with size=N (or HxW)", in, what)
	}
	h, err := size(hd, o.Height, "height")
	if err != nil {
		return nil, err
	}
	w, err := size(wd, o.Width, "width")
	if err != nil {
		return nil, err
	}
	if o.Resize > 0 && o.Resize < max(h, w) {
		return nil, fmt.Errorf("resize=%d is smaller than the model's input %dx%d; the shorter side must be scaled to at least the crop", o.Resize, h, w)
	}
	p := &imagePrep{opts: o, c: int(cd), h: h, w: w}
	p.opts.NHWC = nhwc
	if p.mean, err = perChannel(o.Mean, p.c, 0, "mean"); err != nil {
		return nil, err
	}
	if p.std, err = perChannel(o.Std, p.c, 1, "std"); err != nil {
		return nil, err
	}
	for _, s := range p.std {
		if s <= 0 {
			return nil, fmt.Errorf("std values must be positive (got %v)", o.Std)
		}
	}
	return p, nil
}

// withDefaultSize sets o's size to side x side where the model's input in has a dynamic size
// and o names none, so that models exported with dynamic sizes get the size their family uses.
func withDefaultSize(in models.TensorInfo, o ImageOptions, side int) ImageOptions {
	if o.Height == 0 && o.Width == 0 && len(in.Dims) == 4 && (in.Dims[2] < 0 || in.Dims[3] < 0 || in.Dims[1] < 0) {
		o.Height, o.Width = side, side
	}
	return o
}

// perChannel broadcasts a single value (or def when empty) to c channels.
func perChannel(v []float64, c int, def float64, what string) ([]float64, error) {
	out := make([]float64, c)
	switch len(v) {
	case 0:
		for i := range out {
			out[i] = def
		}
	case 1:
		for i := range out {
			out[i] = v[0]
		}
	case c:
		copy(out, v)
	default:
		return nil, fmt.Errorf("%s has %d values for a model with %d channels", what, len(v), c)
	}
	return out, nil
}

// shape is the model input's shape for a batch of n.
func (p *imagePrep) shape(n int) []int64 {
	if p.opts.NHWC {
		return []int64{int64(n), int64(p.h), int64(p.w), int64(p.c)}
	}
	return []int64{int64(n), int64(p.c), int64(p.h), int64(p.w)}
}

// size is the number of values of one preprocessed image.
func (p *imagePrep) size() int { return p.c * p.h * p.w }

// fill writes every image of imgs, preprocessed, into dst (imgs.N * size() values).
func (p *imagePrep) fill(dst []float32, imgs pixels.Images) {
	for i := range imgs.N {
		p.fillOne(dst[i*p.size():(i+1)*p.size()], imgs.At(i), imgs.C, imgs.H, imgs.W)
	}
}

// fillOne preprocesses one image with ic channels of ih x iw pixels into dst.
func (p *imagePrep) fillOne(dst, img []float32, ic, ih, iw int) {
	s, _ := p.scratch.Get().(*prepScratch)
	if s == nil {
		s = new(prepScratch)
	}
	defer p.scratch.Put(s)
	n := ih * iw
	s.luma = grow(s.luma, n)
	s.cropped = grow(s.cropped, n)
	s.plane = grow(s.plane, p.h*p.w)
	for c := range p.c {
		srcC := c
		if p.opts.BGR && p.c == 3 {
			srcC = 2 - c
		}
		src := channelPlane(img, ic, n, srcC, p.c, s.luma)
		h, w := ih, iw
		if p.opts.Crop > 0 {
			h, w = centerCrop(s.cropped, src, h, w, p.opts.Crop)
			src = s.cropped
		}
		p.toModelSize(s, src, h, w)
		mean, inv := p.mean[c], 1/p.std[c]
		if p.opts.NHWC {
			for j, v := range s.plane {
				dst[j*p.c+c] = float32((float64(v) - mean) * inv)
			}
		} else {
			out := dst[c*p.h*p.w : (c+1)*p.h*p.w]
			for j, v := range s.plane {
				out[j] = float32((float64(v) - mean) * inv)
			}
		}
	}
}

// toModelSize resizes an h x w plane into s.plane (p.h x p.w).
func (p *imagePrep) toModelSize(s *prepScratch, src []float32, h, w int) {
	if p.opts.Resize == 0 {
		p.resize(s, s.plane, p.h, p.w, src, h, w)
		return
	}
	// Shorter side to Resize, the longer in proportion (truncated, as transformers does), then
	// the centred window of the model's size.
	nh, nw := p.opts.Resize, p.opts.Resize
	if h < w {
		nw = int(float64(p.opts.Resize) * float64(w) / float64(h))
	} else {
		nh = int(float64(p.opts.Resize) * float64(h) / float64(w))
	}
	s.scaled = grow(s.scaled, nh*nw)
	p.resize(s, s.scaled, nh, nw, src, h, w)
	y0, x0 := (nh-p.h)/2, (nw-p.w)/2
	for y := range p.h {
		copy(s.plane[y*p.w:(y+1)*p.w], s.scaled[(y0+y)*nw+x0:(y0+y)*nw+x0+p.w])
	}
}

func (p *imagePrep) resize(s *prepScratch, dst []float32, oh, ow int, src []float32, h, w int) {
	switch {
	case p.opts.Bicubic:
		s.tmp = grow(s.tmp, h*ow)
		resizeFiltered(dst, oh, ow, src, h, w, s.tmp, bicubic)
	case p.opts.Antialias:
		s.tmp = grow(s.tmp, h*ow)
		resizeAntialias(dst, oh, ow, src, h, w, s.tmp)
	default:
		pixels.ResizePlane(dst, oh, ow, src, h, w)
	}
}

// grow returns buf with length n, reallocating only when its capacity is short.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
