package sd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/tokenizers/clip"
)

// textEncoder is one CLIP tokenizer and text encoder pair.
type textEncoder struct {
	name string // the part's folder name, for messages
	tok  *clip.Tokenizer
	sess *models.Session
	ids  models.TensorInfo
	// hidden is the output whose states condition the UNet: last_hidden_state for SD 1.x/2.x,
	// the penultimate layer's hidden_states.N for SDXL (diffusers' hidden_states[-2]).
	hidden string
	// pooled is the pooled output SDXL passes as text_embeds ("" when unused).
	pooled string
	// width and poolWidth are the feature sizes of hidden and pooled (-1 if dynamic).
	width, poolWidth int64
}

// openTextEncoder loads dir/tokenizerName and dir/encoderName. With penultimate the encoder must
// export its hidden states (SDXL); with pooled it must have a text_embeds output.
func openTextEncoder(dir, tokenizerName, encoderName string, penultimate, pooled bool, opts []models.Option) (*textEncoder, error) {
	p, err := requirePart(dir, encoderName)
	if err != nil {
		return nil, err
	}
	tokDir := filepath.Join(dir, tokenizerName)
	if st, err := os.Stat(tokDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("model folder %s is incomplete: the %s folder is missing (copy the whole export)", dir, tokenizerName)
	}
	tok, err := clip.Load(tokDir)
	if err != nil {
		return nil, fmt.Errorf("model folder %s: %s: %w", dir, tokenizerName, err)
	}
	sess, err := models.Open(p.model, opts...)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", encoderName, err)
	}
	te := &textEncoder{name: encoderName, tok: tok, sess: sess}
	if err := te.check(penultimate, pooled); err != nil {
		sess.Close()
		return nil, fmt.Errorf("model folder %s: %s: %w", dir, encoderName, err)
	}
	return te, nil
}

func (te *textEncoder) check(penultimate, pooled bool) error {
	var err error
	if te.ids, err = te.sess.RequireInput("input_ids"); err != nil {
		return err
	}
	if te.ids.Type.IsFloat() || len(te.ids.Dims) != 2 {
		return fmt.Errorf("input %s must be an integer [batch, sequence] tensor", te.ids)
	}
	if len(te.sess.Inputs) != 1 {
		return fmt.Errorf("the text encoder has inputs %v; fksteer passes input_ids only (re-export without attention_mask)", te.sess.Inputs)
	}
	te.hidden = "last_hidden_state"
	if penultimate {
		last := -1
		for _, o := range te.sess.Outputs {
			if n, ok := strings.CutPrefix(o.Name, "hidden_states."); ok {
				if i, err := strconv.Atoi(n); err == nil && i > last {
					last = i
				}
			}
		}
		if last < 1 {
			return fmt.Errorf("an SDXL text encoder must output its hidden states (hidden_states.0 ... hidden_states.N, as optimum exports them); this one has %v", te.sess.Outputs)
		}
		te.hidden = "hidden_states." + strconv.Itoa(last-1)
	}
	h, err := te.sess.RequireOutput(te.hidden)
	if err != nil {
		return err
	}
	if len(h.Dims) != 3 || !h.Type.IsFloat() {
		return fmt.Errorf("output %s must be a float [batch, sequence, features] tensor", h)
	}
	te.width = h.Dims[2]
	if pooled {
		te.pooled = "text_embeds"
		p, err := te.sess.RequireOutput(te.pooled)
		if err != nil {
			return err
		}
		if len(p.Dims) != 2 || !p.Type.IsFloat() {
			return fmt.Errorf("output %s must be a float [batch, features] tensor", p)
		}
		te.poolWidth = p.Dims[1]
	}
	return nil
}

// encode runs the encoder on texts as one batch and returns the hidden states (len(texts) rows
// of MaxLength*width values) and, if te pools, the pooled rows. A text longer than the
// tokenizer's limit is cut and logged.
func (te *textEncoder) encode(ctx context.Context, log *slog.Logger, texts []string) (hidden, pooled []float32, err error) {
	seq := int64(te.tok.MaxLength())
	n := int64(len(texts))
	c, err := te.sess.NewCall(withOutputShapes(te.sess, models.Shapes{"input_ids": {n, seq}}, n, seq))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", te.name, err)
	}
	defer c.Close()
	ids, err := c.Int64("input_ids")
	if err != nil {
		return nil, nil, err
	}
	for i, text := range texts {
		row, truncated := te.tok.EncodePadded(text)
		if truncated {
			log.Warn("prompt is longer than the text encoder reads; the end is cut off", "limit_tokens", seq, "encoder", te.name, "prompt", text)
		}
		for j, id := range row {
			ids[int64(i)*seq+int64(j)] = int64(id)
		}
	}
	if err := c.Run(ctx); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", te.name, err)
	}
	out, shape, err := c.Output(te.hidden)
	if err != nil {
		return nil, nil, err
	}
	if len(shape) != 3 || shape[0] != n || shape[1] != seq {
		return nil, nil, fmt.Errorf("%s: output %s has shape %v, want [%d, %d, features]", te.name, te.hidden, shape, n, seq)
	}
	hidden = append([]float32(nil), out...)
	if te.pooled != "" {
		p, _, err := c.Output(te.pooled)
		if err != nil {
			return nil, nil, err
		}
		pooled = append([]float32(nil), p...)
	}
	return hidden, pooled, nil
}

// concatFeatures joins two [rows, seq, a] and [rows, seq, b] arrays along the feature axis,
// as SDXL concatenates its two encoders' states.
func concatFeatures(x []float32, a int, y []float32, b int) []float32 {
	rowsSeq := len(x) / a
	out := make([]float32, 0, rowsSeq*(a+b))
	for i := range rowsSeq {
		out = append(out, x[i*a:(i+1)*a]...)
		out = append(out, y[i*b:(i+1)*b]...)
	}
	return out
}
