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

// Text-line recognition as PaddleOCR's TextRecognizer does it for CRNN models (resize_norm_img):
// the crops of one image are sorted by aspect ratio and read in batches of 6; every crop is
// resized (cv2.resize, INTER_LINEAR, 8-bit) to height 32 and width ceil(32*w/h), at most its
// batch's width int(32*max(10, widest ratio in the batch)); fed in BGR order as
// (v/255 - 0.5)/0.5 and padded with zeros on the right to the batch's width; and the
// [N, T, classes] output is decoded greedily (CTC: best class per step, repeats merged, blanks
// dropped).
//
// The recogniser is sensitive to the scale of the text it is given: the English v2.0 CRNN reads
// the italic "MovieShots" of the test image en_rec.jpg correctly from the whole 30-row image but
// as "MouteShots", "MouieShots" or "MouzeShots" from every detected crop of the line (18 to 28
// rows, where the text fills more of the 32-row input). PaddleOCR reads the same from the same
// crops; matching its crop and resize exactly is what makes fksteer read what it reads, right
// or wrong.

const (
	recHeight   = 32 // the recogniser's input height
	recMinWidth = 320
	// recBatch is PaddleOCR's rec_batch_num: the crops that share a padded width. The padding
	// is not neutral (the recurrent layers read it), so the batches are PaddleOCR's own, made
	// per image; rows of equal width from different images then share one Run.
	recBatch = 6
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
	calls *sessionCalls
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
	r := &recognizer{sess: sess, chars: chars, calls: newSessionCalls(sess)}
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

// textLine is what the recogniser read in one crop: the text and the mean probability of its
// characters.
type textLine struct {
	text  string
	score float64
}

// recRow is one crop placed in the recogniser's input: the crop, the width it is resized to
// and the padded width of its PaddleOCR batch.
type recRow struct {
	crop      bgr8
	w, padded int
	out       int // index in the result
}

// recRows plans the recogniser's rows for crops[i] (each belonging to image img[i]) as
// TextRecognizer does per image: by ascending aspect ratio, in batches of recBatch, each padded
// to its widest crop (and to at least 320).
func recRows(crops []bgr8, img []int) []recRow {
	byImage := map[int][]int{}
	var images []int
	for i, c := range crops {
		if c.w == 0 || c.h == 0 {
			continue
		}
		if _, ok := byImage[img[i]]; !ok {
			images = append(images, img[i])
		}
		byImage[img[i]] = append(byImage[img[i]], i)
	}
	ratio := func(i int) float64 { return float64(crops[i].w) / float64(crops[i].h) }
	var rows []recRow
	for _, im := range images {
		idx := byImage[im]
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(ratio(a), ratio(b)) })
		for lo := 0; lo < len(idx); lo += recBatch {
			batch := idx[lo:min(lo+recBatch, len(idx))]
			widest := float64(recMinWidth) / recHeight
			for _, i := range batch {
				widest = max(widest, ratio(i))
			}
			padded := int(recHeight * widest)
			for _, i := range batch {
				rows = append(rows, recRow{crop: crops[i], w: min(int(math.Ceil(recHeight*ratio(i))), padded), padded: padded, out: i})
			}
		}
	}
	return rows
}

// read recognises every crop; img[i] is the image crops[i] was cut from. Rows of equal padded
// width share a Run, whichever image they come from: a row's output does not depend on the
// other rows of its Run, so batching across images changes no reading.
func (r *recognizer) read(ctx context.Context, crops []bgr8, img []int) ([]textLine, error) {
	out := make([]textLine, len(crops))
	rows := recRows(crops, img)
	slices.SortStableFunc(rows, func(a, b recRow) int { return cmp.Compare(a.padded, b.padded) })
	for lo := 0; lo < len(rows); {
		hi := lo + 1
		for hi < len(rows) && hi-lo < recMaxBatch && rows[hi].padded == rows[lo].padded {
			hi++
		}
		if err := r.readBatch(ctx, rows[lo:hi], out); err != nil {
			return nil, err
		}
		lo = hi
	}
	return out, nil
}

// readBatch recognises rows of one padded width in one Run and writes their lines into out.
func (r *recognizer) readBatch(ctx context.Context, rows []recRow, out []textLine) error {
	pw := rows[0].padded
	return r.calls.with(models.Shapes{r.input: {int64(len(rows)), 3, recHeight, int64(pw)}}, func(call *models.Call) error {
		return r.runBatch(ctx, call, rows, pw, out)
	})
}

// runBatch fills call's input with rows (padded to pw), runs it and writes the lines into out.
func (r *recognizer) runBatch(ctx context.Context, call *models.Call, rows []recRow, pw int, out []textLine) error {
	in, err := call.Float32(r.input)
	if err != nil {
		return err
	}
	size := 3 * recHeight * pw
	resized := make([]uint8, recHeight*pw)
	for k, row := range rows {
		dst := in[k*size : (k+1)*size]
		clear(dst) // padding: 0, mid-grey after normalisation, as PaddleOCR pads
		for c := range 3 {
			resizeLinear8(resized, recHeight, row.w, row.crop.plane(c), row.crop.h, row.crop.w)
			plane := dst[c*recHeight*pw:]
			for y := range recHeight {
				for x, v := range resized[y*row.w : (y+1)*row.w] {
					// numpy's float32 steps: v / 255, then - 0.5, then / 0.5.
					plane[y*pw+x] = (float32(v)/255 - 0.5) / 0.5
				}
			}
		}
	}
	if err := call.Run(ctx); err != nil {
		return err
	}
	probs, shape, err := call.Output(r.output)
	if err != nil {
		return err
	}
	if len(shape) != 3 || int(shape[0]) != len(rows) || int(shape[2]) != len(r.chars) {
		return fmt.Errorf("recogniser output %s has shape %v; want [%d, steps, %d]", r.output, shape, len(rows), len(r.chars))
	}
	steps, classes := int(shape[1]), int(shape[2])
	for k, row := range rows {
		out[row.out] = ctcGreedy(probs[k*steps*classes:(k+1)*steps*classes], steps, classes, r.chars)
	}
	return nil
}

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
