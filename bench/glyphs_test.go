package bench_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/bench"
	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models/glyphs"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
)

func TestTV(t *testing.T) {
	for _, c := range []struct {
		a, b []float64
		want float64
	}{{[]float64{0.5, 0.5}, []float64{1, 0}, 0.5}, {[]float64{0.2, 0.8}, []float64{0.2, 0.8}, 0}, {[]float64{1, 0, 0}, []float64{0, 0, 1}, 1}} {
		if got := bench.TV(c.a, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("TV(%v, %v) = %g, want %g", c.a, c.b, got, c.want)
		}
	}
}

// TestGlyphsTarget: the problem selects the red A on the four backgrounds; the target is a
// distribution that favours the reward; each data image is its own nearest, at distance 0.
func TestGlyphsTarget(t *testing.T) {
	reward, err := rewards.Parse(bench.GlyphsReward, rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := bench.NewGlyphsTarget(context.Background(), bench.GlyphsPrompt, reward, bench.GlyphsLambda)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Images) != 4 {
		t.Fatalf("%d images selected, want 4", len(g.Images))
	}
	var sum float64
	best := 0
	for i, p := range g.Target {
		sum += p
		if g.Rewards[i] > g.Rewards[best] {
			best = i
		}
	}
	if math.Abs(sum-1) > 1e-12 || g.Target[best] <= 0.25 {
		t.Errorf("target %v (rewards %v) is no distribution favouring the best reward", g.Target, g.Rewards)
	}
	d, _ := glyphs.Load()
	imgs := pixels.NewImages(2, glyphs.Channels, glyphs.Side, glyphs.Side)
	for i, m := range []int{g.Images[2], g.Images[2]} {
		for j, v := range d.Image(m) {
			imgs.At(i)[j] = (v + 1) / 2
		}
	}
	if j, rms := g.Nearest(imgs.At(0)); j != 2 || rms > 1e-6 {
		t.Errorf("data image %d: nearest %d at RMS %g", g.Images[2], g.Images[j], rms)
	}
	imgs.At(1)[0] += 50 // off every data image: RMS 50/sqrt(3072) ≈ 0.9
	dist, far := g.Histogram(imgs, nil)
	if far != 1 || dist[2] != 1 {
		t.Errorf("histogram %v with %d far, want all at image 2 and 1 far", dist, far)
	}
}

// TestGlyphsTV runs a tiny exactness study: a row per cell within its budget, each a
// distribution over the four images, and the table naming the optimiser.
func TestGlyphsTV(t *testing.T) {
	modeltest.Runtime(t)
	env := &generation.Env{}
	t.Cleanup(func() { env.Close() })
	c := bench.DefaultTV()
	c.Methods, c.Budgets, c.Groups = []sampler.Method{sampler.Base, sampler.BestOfN, sampler.FK}, []int{2}, 16
	tab, err := bench.GlyphsTV(context.Background(), env, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Rows) != 3 || tab.Unit != bench.GlyphsSteps {
		t.Fatalf("%d rows at %d NFE a base image, want 3 at %d", len(tab.Rows), tab.Unit, bench.GlyphsSteps)
	}
	for _, r := range tab.Rows {
		var sum float64
		for _, p := range r.Dist {
			sum += p
		}
		if math.Abs(sum-1) > 1e-9 || r.Far != 0 || r.NFE > float64(r.Budget) {
			t.Errorf("%s at %dx: distribution %v (sum %g), %d far, %.1f NFE of %d", r.Method, r.Multiple, r.Dist, sum, r.Far, r.NFE, r.Budget)
		}
	}
	var b strings.Builder
	tab.Print(&b)
	for _, w := range []string{"| base | 1x (40) |", "| bon (opt) | 2x (80) |", "(optimiser)", "fk: "} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, b.String())
		}
	}
	t.Logf("\n%s", b.String())
}

// TestStudyStopsAtAFailingMethod: a method that fails stops the study before it starts, with
// a message naming it. It needs a method that fails: one not written yet.
func TestStudyStopsAtAFailingMethod(t *testing.T) {
	modeltest.Runtime(t)
	env := &generation.Env{}
	t.Cleanup(func() { env.Close() })
	for _, m := range []sampler.Method{sampler.SVDD, sampler.Beam, sampler.DTS, sampler.DTSStar, sampler.Noise, sampler.Random} {
		c := bench.DefaultTV()
		c.Methods, c.Budgets, c.Groups = []sampler.Method{sampler.Base, m}, []int{2}, 2
		_, err := bench.GlyphsTV(context.Background(), env, c)
		if err == nil {
			continue
		}
		for _, w := range []string{"bench glyphs: " + string(m) + " fails", "before the study starts"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		return
	}
	t.Skip("every method runs: none is left to fail")
}
