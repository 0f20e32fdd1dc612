package rewards

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/pixels"
)

// Part is one term of a [Composite]: its reward's name and its weight.
type Part struct {
	Name   string
	Weight float64
}

// Composite is a weighted sum of rewards, sum_j w_j r_j(image). Its parts score the same batch
// concurrently, each in one batched call; the first failure cancels the others. A NaN or Inf
// part score makes the total NaN or Inf, so steering gives that particle weight zero. It is
// safe for concurrent use, as its parts are.
type Composite struct {
	parts   []Reward
	weights []float64
	names   []string // part names, made unique with "#2", "#3", ... where a reward repeats
	name    string
}

// NewComposite combines rewards with weights (same length, finite, non-zero). The composite owns
// the parts: its Close closes them.
func NewComposite(parts []Reward, weights []float64) (*Composite, error) {
	if len(parts) == 0 || len(parts) != len(weights) {
		return nil, fmt.Errorf("composite reward: %d parts and %d weights", len(parts), len(weights))
	}
	c := &Composite{parts: parts, weights: weights}
	seen := map[string]int{}
	terms := make([]string, len(parts))
	for j, p := range parts {
		w := weights[j]
		if w == 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("composite reward: part %s has weight %g; weights must be finite and non-zero (drop a part instead of weighting it 0)", p.Name(), w)
		}
		name := p.Name()
		if seen[name]++; seen[name] > 1 {
			name += "#" + strconv.Itoa(seen[name])
		}
		c.names = append(c.names, name)
		terms[j] = strconv.FormatFloat(w, 'g', -1, 64) + "*" + p.Name()
	}
	c.name = strings.Join(terms, "+")
	return c, nil
}

// Name is the composite's formula without options, such as "0.7*preference+0.3*ocr".
func (c *Composite) Name() string { return c.name }

// Parts lists the terms in spec order.
func (c *Composite) Parts() []Part {
	out := make([]Part, len(c.parts))
	for j := range c.parts {
		out[j] = Part{Name: c.names[j], Weight: c.weights[j]}
	}
	return out
}

// Rewards returns the part rewards in spec order; they stay owned by the composite.
func (c *Composite) Rewards() []Reward { return c.parts }

// Score writes sum_j w_j r_j for every image.
func (c *Composite) Score(ctx context.Context, imgs pixels.Images, prompt string, dst []float64) error {
	return c.Explain(ctx, imgs, prompt, dst, nil)
}

// Explain is Score that also reports each part's score (and the text of parts that read text)
// for every image, in spec order.
func (c *Composite) Explain(ctx context.Context, imgs pixels.Images, prompt string, dst []float64, parts [][]PartScore) error {
	if err := checkBatch(imgs, dst); err != nil {
		return err
	}
	if parts != nil && len(parts) != imgs.N {
		return fmt.Errorf("explain %d images into %d breakdowns", imgs.N, len(parts))
	}
	scores := make([][]float64, len(c.parts)) // scores[j][i]: part j's score of image i
	for j := range scores {
		scores[j] = make([]float64, imgs.N)
	}
	var texts [][]PartScore // texts[j][i]: the breakdown of text-reading part j for image i
	if parts != nil {
		texts = make([][]PartScore, len(c.parts))
	}
	err := runAll(ctx, len(c.parts), func(ctx context.Context, j int) error {
		var err error
		if e, ok := c.parts[j].(Explainer); ok && texts != nil {
			sub := make([][]PartScore, imgs.N)
			err = e.Explain(ctx, imgs, prompt, scores[j], sub)
			texts[j] = make([]PartScore, imgs.N)
			for i, s := range sub {
				if len(s) > 0 {
					texts[j][i] = s[0]
				}
			}
		} else {
			err = c.parts[j].Score(ctx, imgs, prompt, scores[j])
		}
		if err != nil {
			return NameError(c.names[j], err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range dst {
		var sum float64
		for j, w := range c.weights {
			sum += w * scores[j][i]
		}
		dst[i] = sum
	}
	if parts == nil {
		return nil
	}
	for i := range parts {
		ps := parts[i][:0]
		for j, w := range c.weights {
			p := PartScore{Name: c.names[j], Weight: w, Score: scores[j][i]}
			if texts[j] != nil {
				p.Text, p.HasText = texts[j][i].Text, texts[j][i].HasText
			}
			ps = append(ps, p)
		}
		parts[i] = ps
	}
	return nil
}

// Close closes every part and returns their errors joined. It must not run while a Score does.
func (c *Composite) Close() error {
	var errs []error
	for _, p := range c.parts {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// NameError prefixes a reward's error with "reward NAME: ", unless the reward named itself
// already (the classifier's errors begin "reward classifier: "), so that a message never reads
// "reward classifier: reward classifier: ...". Callers that report a reward's failure use it
// (a composite for its parts, the sampler for the run's reward).
func NameError(name string, err error) error {
	if strings.HasPrefix(err.Error(), "reward "+name+":") {
		return err
	}
	return fmt.Errorf("reward %s: %w", name, err)
}
