package rewards

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pixels"
)

func init() {
	Register("ocr", newOCR, "rec", "dict", "detect", "det", "det-limit-type", "det-limit", "det-batch", "max-candidates", "thresh", "box-thresh", "unclip", "min-score", "target")
}

// The PaddleOCR English models' files under the model folder (see [DefaultModelDir]).
const (
	DefaultOCRDetector   = "ppocr-en/en_PP-OCRv3_det_infer.onnx"
	DefaultOCRRecognizer = "ppocr-en/en_number_mobile_v2.0_rec_infer.onnx"
	DefaultOCRDict       = "ppocr-en/en_dict.txt"
)

// OCR rewards images for showing the text a prompt quotes, as Flow-GRPO's OCR reward does:
// PaddleOCR reads each image (DB text detection, then CRNN recognition of every box), the lines
// read are joined with no separator, and the result is compared with the prompt's first
// double-quoted text by [OCRReward]. The detection and recognition run in Go around the two
// ONNX models and reproduce PaddleOCR's inference (TextSystem) exactly: the same 8-bit resizes
// and crops, the same box geometry, the same recogniser batches, so the lines read are
// PaddleOCR's. All images go through the detector in one batch, and the recogniser's rows of
// equal width share Runs across images.
type OCR struct {
	o   OCROptions
	det *detector // nil when detection is off
	rec *recognizer
}

// OCROptions configure [NewOCR]; [DefaultOCROptions] gives PaddleOCR's settings.
type OCROptions struct {
	// Detector, Recognizer and Dict are the DB detector and CRNN recogniser ONNX files and the
	// recogniser's character dictionary.
	Detector, Recognizer, Dict string
	// NoDetect reads each whole image as one line of text (no detector), for images that are
	// a single word, like the built-in glyphs model's.
	NoDetect bool
	// DetLimit and DetLimitType size the detector's input: "max" shrinks images whose longer
	// side exceeds DetLimit, "min" enlarges images whose shorter side is below it. DetBatch
	// bounds the images per detector Run (0: all).
	DetLimit     int
	DetLimitType string
	DetBatch     int
	// DB is the detector's post-processing.
	DB DBParams
	// MinScore drops lines whose mean character probability is lower (PaddleOCR's
	// drop_score, 0.5). It is the reward's box-confidence threshold: Flow-GRPO joins every line
	// PaddleOCR returns that has a confidence above 0, and PaddleOCR has already dropped those
	// below drop_score, so the default reproduces Flow-GRPO; 0 keeps every line read.
	MinScore float64
	// Target, when set, is the text to look for; otherwise each prompt's quoted text is.
	Target string
}

// DefaultOCROptions returns PaddleOCR's settings (det_limit_side_len 960 "max", DB 0.3 / 0.6 /
// 1.5, drop_score 0.5) with the English models under modelDir (empty: [DefaultModelDir]).
func DefaultOCROptions(modelDir string) OCROptions {
	if modelDir == "" {
		modelDir = DefaultModelDir()
	}
	return OCROptions{
		Detector:   filepath.Join(modelDir, DefaultOCRDetector),
		Recognizer: filepath.Join(modelDir, DefaultOCRRecognizer),
		Dict:       filepath.Join(modelDir, DefaultOCRDict),
		DetLimit:   960, DetLimitType: "max",
		DB:       DefaultDBParams,
		MinScore: 0.5,
	}
}

func newOCR(o *Options, env Env) (Reward, error) {
	oo := DefaultOCROptions(env.ModelDir)
	// Values are checked before model files are looked up, so a bad value is reported as
	// itself even where the default models are missing.
	detect, err := o.Bool("detect", true)
	if err != nil {
		return nil, err
	}
	oo.NoDetect = !detect
	if !detect && o.Has("det") {
		return nil, fmt.Errorf("reward ocr: det= names a detector, but detect=false turns detection off")
	}
	oo.DetLimitType = o.String("det-limit-type", oo.DetLimitType)
	for _, f := range []struct {
		key string
		dst *int
	}{{"det-limit", &oo.DetLimit}, {"det-batch", &oo.DetBatch}, {"max-candidates", &oo.DB.MaxCandidates}} {
		if *f.dst, err = o.Int(f.key, *f.dst); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		key string
		dst *float64
	}{{"thresh", &oo.DB.Thresh}, {"box-thresh", &oo.DB.BoxThresh}, {"unclip", &oo.DB.UnclipRatio}, {"min-score", &oo.MinScore}} {
		if *f.dst, err = o.Float(f.key, *f.dst); err != nil {
			return nil, err
		}
	}
	oo.Target = o.String("target", "")
	if oo.Recognizer, err = env.modelFile(o, "rec", DefaultOCRRecognizer); err != nil {
		return nil, err
	}
	if oo.Dict, err = env.modelFile(o, "dict", DefaultOCRDict); err != nil {
		return nil, err
	}
	if detect {
		if oo.Detector, err = env.modelFile(o, "det", DefaultOCRDetector); err != nil {
			return nil, err
		}
	}
	return NewOCR(oo, env.ModelOptions...)
}

// NewOCR loads the recogniser (and the detector, unless NoDetect).
func NewOCR(o OCROptions, opts ...models.Option) (*OCR, error) {
	switch {
	case o.DetLimitType != "max" && o.DetLimitType != "min":
		return nil, fmt.Errorf("reward ocr: det-limit-type=%q is not max or min", o.DetLimitType)
	case o.DetLimit <= 0 || o.DetBatch < 0 || o.DB.MaxCandidates <= 0:
		return nil, fmt.Errorf("reward ocr: det-limit and max-candidates must be positive, det-batch 0 or positive")
	case o.DB.UnclipRatio <= 0:
		return nil, fmt.Errorf("reward ocr: unclip must be positive")
	case !(o.MinScore >= 0 && o.MinScore <= 1):
		return nil, fmt.Errorf("reward ocr: min-score=%g is not a probability between 0 and 1", o.MinScore)
	}
	r := &OCR{o: o}
	var err error
	if r.rec, err = newRecognizer(o.Recognizer, o.Dict, opts); err != nil {
		return nil, fmt.Errorf("reward ocr: %w", err)
	}
	if !o.NoDetect {
		if r.det, err = newDetector(o.Detector, o, opts); err != nil {
			return nil, errors.Join(fmt.Errorf("reward ocr: %w", err), r.rec.close())
		}
	}
	return r, nil
}

// TextLine is one line of text read in an image.
type TextLine struct {
	Text string
	// Score is the mean probability of the line's characters.
	Score float64
	// Box is the line's quadrilateral in image pixels: top-left, top-right, bottom-right,
	// bottom-left (x, y).
	Box [4][2]float64
}

// Read returns the lines of text in every image, top to bottom and left to right, dropping
// lines read with a mean character probability below MinScore. It follows PaddleOCR's
// TextSystem step for step: each image is taken to 8 bits, detected, each box cut out by
// get_rotate_crop_image and read by the recogniser in PaddleOCR's batches.
func (r *OCR) Read(ctx context.Context, imgs pixels.Images) ([][]TextLine, error) {
	if err := imgs.Validate(); err != nil {
		return nil, err
	}
	pix := make([]bgr8, imgs.N)
	for i := range pix {
		pix[i] = toBGR8(imgs, i)
	}
	var crops []bgr8
	var from []int
	var boxes []quad
	if r.det == nil {
		// PaddleOCR's recognition-only path reads the image as it is.
		crops, boxes = pix, make([]quad, imgs.N)
		for i := range pix {
			from = append(from, i)
			boxes[i] = quad{pt(0, 0), pt(imgs.W, 0), pt(imgs.W, imgs.H), pt(0, imgs.H)}
		}
	} else {
		found, err := r.det.detect(ctx, pix)
		if err != nil {
			return nil, fmt.Errorf("reward ocr: detect: %w", err)
		}
		for i, bs := range found {
			for _, b := range bs {
				c, ok := rotateCrop(pix[i], b)
				if !ok {
					continue
				}
				crops, from, boxes = append(crops, c), append(from, i), append(boxes, b)
			}
		}
	}
	read, err := r.rec.read(ctx, crops, from)
	if err != nil {
		return nil, fmt.Errorf("reward ocr: recognise: %w", err)
	}
	lines := make([][]TextLine, imgs.N)
	for k, b := range boxes {
		// TextSystem keeps lines scored at least drop_score; an empty line scores 0.
		if read[k].text == "" || read[k].score < r.o.MinScore {
			continue
		}
		l := TextLine{Text: read[k].text, Score: read[k].score}
		for j, p := range b {
			l.Box[j] = [2]float64{p.x, p.y}
		}
		lines[from[k]] = append(lines[from[k]], l)
	}
	return lines, nil
}

// Name is "ocr".
func (r *OCR) Name() string { return "ocr" }

// Score reads every image and scores the text against the target by [OCRReward].
func (r *OCR) Score(ctx context.Context, imgs pixels.Images, prompt string, dst []float64) error {
	return r.Explain(ctx, imgs, prompt, dst, nil)
}

// Explain is Score that also reports the text read in each image (its lines joined by
// newlines).
func (r *OCR) Explain(ctx context.Context, imgs pixels.Images, prompt string, dst []float64, parts [][]PartScore) error {
	if err := checkBatch(imgs, dst); err != nil {
		return err
	}
	target := r.o.Target
	if target == "" {
		var ok bool
		if target, ok = QuotedText(prompt); !ok {
			return fmt.Errorf("reward ocr: prompt %q quotes no text to look for (write it in double quotes, or set target=TEXT)", prompt)
		}
	}
	if ocrNormalize(target) == "" {
		return fmt.Errorf("reward ocr: the text to look for (%q) is empty", target)
	}
	lines, err := r.Read(ctx, imgs)
	if err != nil {
		return err
	}
	for i, ls := range lines {
		texts := make([]string, len(ls))
		for j, l := range ls {
			texts[j] = l.Text
		}
		dst[i] = OCRReward(strings.Join(texts, ""), target)
		if parts != nil {
			parts[i] = append(parts[i][:0], PartScore{Name: r.Name(), Weight: 1, Score: dst[i], Text: strings.Join(texts, "\n"), HasText: true})
		}
	}
	return nil
}

// Close releases both models. It must not run while a Score does.
func (r *OCR) Close() error {
	var errs []error
	if r.det != nil {
		errs = append(errs, r.det.close())
	}
	return errors.Join(append(errs, r.rec.close())...)
}
