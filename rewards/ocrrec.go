package rewards

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/models"
)

// Text-line recognition as PaddleOCR's TextRecognizer does it for CRNN models: every crop is
// resized to height 32 keeping its aspect ratio, fed in BGR order as (v - 0.5) / 0.5, padded
// with zeros on the right to its batch's width (at least 320), and the [N, T, classes] output is
// decoded greedily (CTC: best class per step, repeats merged, blanks dropped).

const (
	recHeight   = 32 // the recogniser's input height
	recMinWidth = 320
	// recMaxWidthGrowth bounds the padding within a batch: crops join a batch while their width
	// is at most this times the width of the batch's narrowest (batches are made from crops
	// sorted by width), so a few long lines do not make every short one pay for their width.
	recMaxWidthGrowth = 1.5
	// recMaxBatch bounds the crops of one Run.
	recMaxBatch = 64
)

// recognizer runs a CRNN+CTC text-line model.
type recognizer struct {
	sess          *models.Session
	input, output string
	// chars[k] is the text of class k: "" for the blank (0), then the dictionary's lines, then
	// a space.
	chars []string
	calls *callCache
}

// loadDict reads a PaddleOCR character dictionary: one character per line (a line may be a
// space), and returns the class texts: blank, the lines, then a space (use_space_char).
func loadDict(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("character dictionary: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	chars := make([]string, 0, len(lines)+2)
	chars = append(chars, "")
	for _, l := range lines {
		chars = append(chars, strings.TrimSuffix(l, "\r"))
	}
	return append(chars, " "), nil
}

func newRecognizer(path, dict string, opts []models.Option) (*recognizer, error) {
	chars, err := loadDict(dict)
	if err != nil {
		return nil, err
	}
	sess, err := models.Open(path, opts...)
	if err != nil {
		return nil, err
	}
	r := &recognizer{sess: sess, chars: chars, calls: newCallCache(sess)}
	in, err := pickTensor(sess.Inputs, "", "input", "rec", func(t models.TensorInfo) bool { return len(t.Dims) == 4 && t.Type.IsFloat() })
	if err == nil && (in.Dims[1] > 0 && in.Dims[1] != 3 || in.Dims[2] > 0 && in.Dims[2] != recHeight) {
		err = fmt.Errorf("input %s is not [batch, 3, 32, width]", in)
	}
	var out models.TensorInfo
	if err == nil {
		out, err = pickTensor(sess.Outputs, "", "output", "rec", func(t models.TensorInfo) bool { return len(t.Dims) == 3 })
	}
	if err == nil && out.Dims[2] > 0 && int(out.Dims[2]) != len(chars) {
		err = fmt.Errorf("output %s has %d classes, the dictionary %s gives %d (blank, %d characters, space): they do not belong together", out, out.Dims[2], dict, len(chars), len(chars)-2)
	}
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("recogniser %s: %w", path, err)
	}
	r.input, r.output = in.Name, out.Name
	return r, nil
}

// crop is a text region to read: a quadrilateral of image img (top-left, top-right,
// bottom-right, bottom-left of the text as read, in pixel coordinates), the size of the upright
// crop it makes, and the box as detected.
type crop struct {
	img  int
	q    quad
	w, h int
	box  quad
}

// newCrop makes the crop PaddleOCR's get_rotate_crop_image makes of box: as wide as its longer
// horizontal side and as tall as its longer vertical side, turned a quarter counter-clockwise
// when it is at least 1.5 times taller than wide (a vertical line of text).
func newCrop(img int, box quad) crop {
	c := crop{img: img, q: box, w: int(box.width()), h: int(box.height()), box: box}
	if c.w > 0 && float64(c.h)/float64(c.w) >= 1.5 {
		c.q, c.w, c.h = box.rotated(), c.h, c.w
	}
	return c
}

// wholeImage is the crop of an entire h x w image.
func wholeImage(img, h, w int) crop {
	q := quad{pt(0, 0), pt(w, 0), pt(w, h), pt(0, h)}
	return crop{img: img, q: q, w: w, h: h, box: q}
}

func (c crop) ratio() float64 { return float64(c.w) / float64(c.h) }

// textLine is what the recogniser read in one crop: the text and the mean probability of its
// characters.
type textLine struct {
	text  string
	score float64
}

// read recognises every crop (of images in imgs) in batches of similar width.
func (r *recognizer) read(ctx context.Context, imgs models.Images, crops []crop) ([]textLine, error) {
	out := make([]textLine, len(crops))
	order := make([]int, 0, len(crops))
	for i, c := range crops {
		if c.w > 0 && c.h > 0 {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(crops[a].ratio(), crops[b].ratio()) })
	for lo := 0; lo < len(order); {
		first := recWidth(crops[order[lo]].ratio())
		hi := lo + 1
		for hi < len(order) && hi-lo < recMaxBatch && float64(recWidth(crops[order[hi]].ratio())) <= recMaxWidthGrowth*float64(first) {
			hi++
		}
		if err := r.readBatch(ctx, imgs, crops, order[lo:hi], out); err != nil {
			return nil, err
		}
		lo = hi
	}
	return out, nil
}

// recWidth is the padded width of a batch whose widest crop has aspect ratio ratio: PaddleOCR's
// imgW = int(32 * max(320/32, ratio)).
func recWidth(ratio float64) int { return int(recHeight * max(float64(recMinWidth)/recHeight, ratio)) }

// readBatch recognises crops[idx...] in one Run and writes their lines into out.
func (r *recognizer) readBatch(ctx context.Context, imgs models.Images, crops []crop, idx []int, out []textLine) error {
	maxRatio := 0.0
	for _, i := range idx {
		maxRatio = max(maxRatio, crops[i].ratio())
	}
	pw := recWidth(maxRatio)
	call, err := r.calls.get(models.Shapes{r.input: {int64(len(idx)), 3, recHeight, int64(pw)}})
	if err != nil {
		return err
	}
	in, err := call.Float32(r.input)
	if err != nil {
		return err
	}
	size := 3 * recHeight * pw
	for k, i := range idx {
		c := crops[i]
		tw := min(int(math.Ceil(recHeight*c.ratio())), pw)
		dst := in[k*size : (k+1)*size]
		clear(dst) // padding: 0, mid-grey after normalisation, as PaddleOCR pads
		sampleCrop(dst, pw, tw, imgs.At(c.img), imgs.C, imgs.H, imgs.W, c)
	}
	if err := call.Run(ctx); err != nil {
		return err
	}
	probs, shape, err := call.Output(r.output)
	if err != nil {
		return err
	}
	if len(shape) != 3 || int(shape[0]) != len(idx) || int(shape[2]) != len(r.chars) {
		return fmt.Errorf("recogniser output %s has shape %v; want [%d, steps, %d]", r.output, shape, len(idx), len(r.chars))
	}
	steps, classes := int(shape[1]), int(shape[2])
	for k, i := range idx {
		out[i] = ctcGreedy(probs[k*steps*classes:(k+1)*steps*classes], steps, classes, r.chars)
	}
	return nil
}

// sampleCrop writes crop c of an image (ic channels of ih x iw, in [0, 1]) resized to
// 32 x tw into the first tw columns of dst, three BGR planes of 32 x pw, as (v - 0.5) / 0.5.
// Each output pixel maps to crop coordinates as OpenCV's INTER_LINEAR resize does (half-pixel
// centres, clamped at the edges) and from there through the crop's quadrilateral to the image,
// which is sampled bilinearly with its edge pixels repeated (BORDER_REPLICATE).
func sampleCrop(dst []float32, pw, tw int, img []float32, ic, ih, iw int, c crop) {
	plane := ih * iw
	sx, sy := float64(c.w)/float64(tw), float64(c.h)/float64(recHeight)
	for y := range recHeight {
		cy := min(max((float64(y)+0.5)*sy-0.5, 0), float64(c.h-1))
		for x := range tw {
			cx := min(max((float64(x)+0.5)*sx-0.5, 0), float64(c.w-1))
			p := c.q.at(cx/float64(c.w), cy/float64(c.h))
			x0, y0 := math.Floor(p.x), math.Floor(p.y)
			fx, fy := p.x-x0, p.y-y0
			xa, xb := clampInt(int(x0), iw), clampInt(int(x0)+1, iw)
			ya, yb := clampInt(int(y0), ih), clampInt(int(y0)+1, ih)
			for ch := range 3 {
				src := img[min(2-ch, ic-1)*plane:] // BGR: model channel 0 is blue
				v := (float64(src[ya*iw+xa])*(1-fx)+float64(src[ya*iw+xb])*fx)*(1-fy) +
					(float64(src[yb*iw+xa])*(1-fx)+float64(src[yb*iw+xb])*fx)*fy
				dst[(ch*recHeight+y)*pw+x] = float32((v - 0.5) / 0.5)
			}
		}
	}
}

func clampInt(v, n int) int { return min(max(v, 0), n-1) }

// ctcGreedy decodes one [steps, classes] row of probabilities: the most probable class per
// step, consecutive repeats merged, blanks (class 0) dropped. The score is the mean
// probability of the kept steps (0 when nothing is read).
func ctcGreedy(probs []float32, steps, classes int, chars []string) textLine {
	var b strings.Builder
	var sum float64
	n, prev := 0, -1
	for t := range steps {
		row := probs[t*classes : (t+1)*classes]
		best := 0
		for k, p := range row {
			if p > row[best] {
				best = k
			}
		}
		if best != prev && best != 0 {
			b.WriteString(chars[best])
			sum += float64(row[best])
			n++
		}
		prev = best
	}
	if n == 0 {
		return textLine{}
	}
	return textLine{text: b.String(), score: sum / float64(n)}
}

func (r *recognizer) close() error { return r.calls.close() }
