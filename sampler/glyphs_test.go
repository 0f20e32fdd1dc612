package sampler_test

import (
	"context"
	"math"
	"testing"

	"github.com/fksteer/fksteer/models/glyphs"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// nearestGlyph returns the data image closest to image i of imgs (in [0, 1]) and the RMS
// distance to it.
func nearestGlyph(d *glyphs.Dataset, imgs pixels.Images, i int) (int, float64) {
	best, bestD := -1, math.Inf(1)
	img := imgs.At(i)
	for m := range d.Len() {
		var s float64
		for j, v := range d.Image(m) {
			e := float64(img[j]) - (float64(v)+1)/2
			s += e * e
		}
		if s < bestD {
			best, bestD = m, s
		}
	}
	return best, math.Sqrt(bestD / float64(len(img)))
}

// TestGlyphsSamplesAreMatchingDataImages: samples of the exact denoiser are data images (up to
// the last step's residual noise, RMS < 0.02 in [0, 1] pixel units, 8-bit quantisation is 0.002)
// whose tags satisfy the prompt.
func TestGlyphsSamplesAreMatchingDataImages(t *testing.T) {
	p := openGlyphs(t)
	d, err := glyphs.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, prompt := range []string{`a red "A" on black`, `the word cat`, `"7" in yellow`, `something on navy`} {
		sel := d.Match(prompt)
		if !sel.Matched {
			t.Fatalf("prompt %q selects nothing: the test's prompts must be satisfiable", prompt)
		}
		for _, rule := range []schedule.Rule{schedule.EulerRule, schedule.DDIMRule} {
			res, err := sampler.Run(context.Background(), p, sampler.Config{
				Prompt: prompt, Steps: 50, Guidance: 1, Rule: rule, Eta: 1, Seed: 7, Images: 6, Particles: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := range res.Images.N {
				m, rms := nearestGlyph(d, res.Images, i)
				if rms > 0.02 {
					t.Errorf("%q (%s) image %d: RMS distance %.4f to the nearest data image; not a data image", prompt, rule, i, rms)
				}
				if !sel.Mask[m] {
					t.Errorf("%q (%s) image %d is data image %d with tags %+v, which the prompt does not select", prompt, rule, i, m, d.Item(m))
				}
			}
		}
	}
}
