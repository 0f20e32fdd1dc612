package rewards

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/pixels"
)

func init() { Register("color", newColor, "target") }

// Color rewards images whose mean colour is close to a target: 1 - d/sqrt(3), where d is the
// Euclidean distance between the image's mean RGB and the target, both in [0, 1]. It is 1 for an
// exact match and 0 for opposite corners of the colour cube. Single-channel images are compared
// as grey.
type Color struct {
	target [3]float64
}

func newColor(o *Options, _ Env) (Reward, error) {
	s := o.String("target", "")
	if s == "" {
		return nil, fmt.Errorf("reward color: option target=#rrggbb is required")
	}
	c, err := ParseHexColor(s)
	if err != nil {
		return nil, fmt.Errorf("reward color: %w", err)
	}
	return &Color{target: c}, nil
}

// NewColor returns the colour reward for a target colour with components in [0, 1].
func NewColor(target [3]float64) *Color { return &Color{target: target} }

// ParseHexColor reads #rgb or #rrggbb into components in [0, 1].
func ParseHexColor(s string) ([3]float64, error) {
	h := strings.TrimPrefix(s, "#")
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if len(h) != 6 || err != nil {
		return [3]float64{}, fmt.Errorf("colour %q is not #rgb or #rrggbb", s)
	}
	return [3]float64{float64(v>>16&0xff) / 255, float64(v>>8&0xff) / 255, float64(v&0xff) / 255}, nil
}

// Name is "color".
func (c *Color) Name() string { return "color" }

// Score computes each image's mean colour and its closeness to the target.
func (c *Color) Score(_ context.Context, imgs pixels.Images, _ string, dst []float64) error {
	if err := checkBatch(imgs, dst); err != nil {
		return err
	}
	plane := imgs.H * imgs.W
	for i := range imgs.N {
		img := imgs.At(i)
		var mean [3]float64
		for ch := range 3 {
			src := min(ch, imgs.C-1)
			var sum float64
			for _, v := range img[src*plane : (src+1)*plane] {
				sum += float64(v)
			}
			mean[ch] = sum / float64(plane)
		}
		var d2 float64
		for ch := range 3 {
			d := mean[ch] - c.target[ch]
			d2 += d * d
		}
		dst[i] = 1 - math.Sqrt(d2)/math.Sqrt(3)
	}
	return nil
}

// Close does nothing.
func (c *Color) Close() error { return nil }

func checkBatch(imgs pixels.Images, dst []float64) error {
	if err := imgs.Validate(); err != nil {
		return err
	}
	if len(dst) != imgs.N {
		return fmt.Errorf("score %d images into %d slots", imgs.N, len(dst))
	}
	return nil
}
