package bench_test

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fksteer/fksteer/bench"
	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/sampler"
)

// TestSteerScheduleIsTheOneThatRuns: the default schedule (every 2 steps from 2 to 46, stated
// for 50 steps) is clamped to the steps when the spec leaves it alone, so the table's header
// says what runs; a value the spec sets is kept, for Check to refuse.
func TestSteerScheduleIsTheOneThatRuns(t *testing.T) {
	end46 := 46
	for _, c := range []struct {
		steps              int
		end                *int
		wantStart, wantEnd int
	}{
		{50, nil, 2, 46},
		{10, nil, 2, 9},
		{2, nil, 1, 1},
		{1, nil, 0, 0},
		{10, &end46, 2, 46},
	} {
		cfg := bench.DefaultSteer()
		cfg.Spec.Steps, cfg.Spec.ResampleEnd = c.steps, c.end
		s := cfg.Schedule()
		if s.Every != 2 || s.Start != c.wantStart || s.End != c.wantEnd {
			t.Errorf("%d steps: schedule %+v, want every 2 from %d to %d", c.steps, s, c.wantStart, c.wantEnd)
		}
	}
}

// TestSteerCheck: every mistake in a study is refused before anything opens (the default model
// path does not exist from this folder), as an error of the kinds a front end reports as bad
// usage, naming the cell it breaks.
func TestSteerCheck(t *testing.T) {
	env := &generation.Env{}
	if err := bench.DefaultSteer().Check(env); err != nil {
		t.Fatalf("the default study: %v", err)
	}
	end46 := 46
	for _, c := range []struct {
		name  string
		edit  func(*bench.SteerConfig)
		wants []string
	}{
		{"no runs", func(c *bench.SteerConfig) { c.Runs = 0 }, []string{"--runs 0"}},
		{"budget 0", func(c *bench.SteerConfig) { c.Budgets = []int{2, 0} }, []string{"--budgets", "at least 1"}},
		{"budget twice", func(c *bench.SteerConfig) { c.Budgets = []int{2, 4, 2} }, []string{"--budgets", "2 is listed twice"}},
		{"method twice", func(c *bench.SteerConfig) { c.Methods = []sampler.Method{sampler.FK, sampler.FK} }, []string{"--methods", "fk is listed twice"}},
		{"digit 12", func(c *bench.SteerConfig) { c.Digits = []int{3, 12} }, []string{"12 is not an MNIST digit"}},
		{"seed wraps", func(c *bench.SteerConfig) { c.Spec.Seed = 1<<64 - 10 }, []string{"wraps around"}},
		{"deterministic FK", func(c *bench.SteerConfig) { c.Spec.Sampler = "euler" }, []string{"fk at 2x: ", "stochastic sampler"}},
		{"end past the steps", func(c *bench.SteerConfig) { c.Spec.Steps, c.Spec.ResampleEnd = 10, &end46 }, []string{"fk at 2x: ", "last resampling step 46"}},
		{"noise's 4 neighbours at 2x (one round of 2 fits)", func(c *bench.SteerConfig) { c.Overrides = nil }, nil},
		{"a beam dearer than the budget", func(c *bench.SteerConfig) {
			c.Overrides = bench.Overrides{sampler.Beam: {Candidates: 3}} // 1 + 49*3 NFE a beam
		}, []string{"beam at 2x: ", "budget of 100 NFE"}},
		{"an override of the study's own key", func(c *bench.SteerConfig) {
			c.Overrides = bench.Overrides{sampler.DTS: {Particles: 4}}
		}, []string{"--set dts:particles", "the study sets particles itself"}},
		{"bon only, deterministic", func(c *bench.SteerConfig) {
			c.Spec.Sampler, c.Methods = "euler", []sampler.Method{sampler.BestOfN}
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := bench.DefaultSteer()
			c.edit(&cfg)
			err := cfg.Check(env)
			if c.wants == nil {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			var se *generation.SpecError
			var ce *sampler.ConfigError
			if !errors.As(err, &se) && !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is neither a SpecError nor a ConfigError", err, err)
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestOverridesSet: --set reads METHOD:key=value pairs as spec keys over what a method has,
// writes them back as it reads them, and refuses unknown methods and keys.
func TestOverridesSet(t *testing.T) {
	o := bench.DefaultOverrides()
	for _, v := range []string{"dts:lambda=4,iterations=3", "dts:iterations=5", "noise:noise-scale=0.25"} {
		if err := o.Set(v); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
	}
	if s := o[sampler.DTS]; s.Lambda == nil || *s.Lambda != 4 || s.Iterations != 5 {
		t.Errorf("dts: %+v", s)
	}
	if got, want := o.String(), "dts:iterations=5,lambda=4 noise:neighbours=2,noise-scale=0.25"; got != want {
		t.Errorf("written back as %q, want %q", got, want)
	}
	for _, bad := range []string{"dts", "dst:lambda=4", "dts:lambda", "dts:lamda=4"} {
		if err := o.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMeanPairwiseDistance(t *testing.T) {
	imgs := pixels.Images{N: 3, C: 1, H: 1, W: 2, Pix: []float32{0, 0, 3, 4, 0, 0}}
	// Pairs: (0,1) 5, (0,2) 0, (1,2) 5.
	if got := bench.MeanPairwiseDistance(imgs); math.Abs(got-10.0/3) > 1e-12 {
		t.Errorf("mean pairwise distance %g, want 10/3", got)
	}
	imgs.N = 1
	if got := bench.MeanPairwiseDistance(imgs); !math.IsNaN(got) {
		t.Errorf("one image: %g, want NaN", got)
	}
}

// TestHacking: a cell is flagged when the judges' success rates differ by more than 20 points
// either way, not at 20.
func TestHacking(t *testing.T) {
	for _, c := range []struct {
		clf, read int
		want      bool
	}{{60, 40, false}, {61, 40, true}, {20, 41, true}, {64, 64, false}} {
		tl := bench.Tally{Classifier: bench.Rate{Successes: c.clf, Runs: 100}, Reader: bench.Rate{Successes: c.read, Runs: 100}}
		if tl.Hacking() != c.want {
			t.Errorf("classifier %d%%, reader %d%%: hacking %v, want %v", c.clf, c.read, tl.Hacking(), c.want)
		}
	}
}

// syntheticTable is a study of every method at 2x and 4x whose fk at 4x hacks the reward on
// digit 8 only.
func syntheticTable() *bench.SteerTable {
	t := &bench.SteerTable{Model: "mnist-dit-rf", Unit: 50, Runs: 32, Digits: []int{3, 8}, ReaderK: 5,
		Overrides: bench.DefaultOverrides()}
	t.Config.Steps, t.Config.Rule, t.Config.Eta = 50, "ddim", 1
	tally := func(clf, read int, nfe float64) bench.Tally {
		return bench.Tally{Classifier: bench.Rate{Successes: clf, Runs: 32}, Reader: bench.Rate{Successes: read, Runs: 32},
			Reward: -1, Roots: 1, Distance: 8, NFE: nfe, Wall: 3 * time.Millisecond}
	}
	for i, m := range sampler.Methods() {
		for _, mult := range []int{2, 4} {
			if m == sampler.Base && mult > 2 {
				continue
			}
			if m == sampler.Base {
				mult = 1
			}
			nfe := float64(mult * t.Unit)
			d := []bench.Tally{tally(10+i+mult, 8+i+mult, nfe), tally(12+i+mult, 10+i, nfe)}
			if m == sampler.FK && mult == 4 {
				d[1] = tally(30, 5, nfe)
			}
			t.Rows = append(t.Rows, bench.Row{Method: m, Optimiser: m.Optimiser(), Multiple: mult, Budget: mult * t.Unit, Sampler: "ddim",
				Digits: d, Pooled: bench.Tally{Classifier: d[0].Classifier, Reader: d[0].Reader, NFE: nfe}})
		}
	}
	return t
}

// TestSteerTablePrint: the table has a row per method and budget, marks the optimisers and
// flags the cell whose judges disagree.
func TestSteerTablePrint(t *testing.T) {
	var b strings.Builder
	syntheticTable().Print(&b)
	out := b.String()
	for _, m := range sampler.Methods() {
		want := "| " + string(m) + " |"
		if m.Optimiser() {
			want = "| " + string(m) + " (opt) |"
		}
		if !strings.Contains(out, want) {
			t.Errorf("no row starts %q:\n%s", want, out)
		}
	}
	var flagged []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "**hacking**") {
			flagged = append(flagged, line)
		}
	}
	if len(flagged) != 1 || !strings.HasPrefix(flagged[0], "| fk | 4x (200) |") || !strings.Contains(flagged[0], "8: +78") {
		t.Errorf("want only fk at 4x flagged, for digit 8 (+78 points); flagged:\n%s", strings.Join(flagged, "\n"))
	}
}

// TestSteerPlot: the plot is a PNG of the stated size with every method's colour in it.
func TestSteerPlot(t *testing.T) {
	var buf bytes.Buffer
	if err := syntheticTable().WritePlot(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != bench.PlotWidth || b.Dy() != bench.PlotHeight {
		t.Fatalf("plot is %v, want %dx%d", b, bench.PlotWidth, bench.PlotHeight)
	}
	for _, m := range sampler.Methods() {
		want, n := bench.PlotColor(m), 0
		for y := range bench.PlotHeight {
			for x := range bench.PlotWidth {
				r, g, b, _ := img.At(x, y).RGBA()
				if uint8(r>>8) == want.R && uint8(g>>8) == want.G && uint8(b>>8) == want.B {
					n++
				}
			}
		}
		if n < 50 {
			t.Errorf("%s: %d pixels of its colour %v, want its lines and legend", m, n, want)
		}
	}
}

// tinySteer is the end-to-end study's configuration on the real models: 10 steps, 2 runs per
// digit, base, bon and fk at 2x. It skips the test when the shared models are absent.
func tinySteer(t *testing.T) bench.SteerConfig {
	t.Helper()
	modeltest.Runtime(t)
	testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	clf := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	c := bench.DefaultSteer()
	c.Spec.Model = filepath.Join(testenv.ModuleRoot(), "examples", "mnist-dit-rf.yaml")
	c.Spec.Steps, c.Runs, c.Budgets = 10, 2, []int{2}
	c.Methods = []sampler.Method{sampler.Base, sampler.BestOfN, sampler.FK}
	c.Classifier, c.MNISTDir = clf, filepath.Dir(clf)
	return c
}

// TestSteerStudy runs a tiny study end to end on the real DiT: a row per cell, every cell
// within its budget, and the table and plot drawn from what it measured.
func TestSteerStudy(t *testing.T) {
	c := tinySteer(t)
	var lines []string
	c.Progress = func(l string) { lines = append(lines, l) }
	env := &generation.Env{}
	t.Cleanup(func() { env.Close() })
	start := time.Now()
	tab, err := bench.Steer(context.Background(), env, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cells in %v:\n%s", len(tab.Rows), time.Since(start).Round(time.Millisecond), strings.Join(lines, "\n"))
	if tab.Unit != 10 {
		t.Errorf("base NFE %d, want 10 (10 steps, no guidance)", tab.Unit)
	}
	want := []struct {
		m    sampler.Method
		mult int
	}{{sampler.Base, 1}, {sampler.BestOfN, 2}, {sampler.FK, 2}}
	if len(tab.Rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(tab.Rows), len(want))
	}
	for i, r := range tab.Rows {
		if r.Method != want[i].m || r.Multiple != want[i].mult || r.Budget != want[i].mult*10 {
			t.Errorf("row %d is %s at %dx (%d NFE), want %s at %dx", i, r.Method, r.Multiple, r.Budget, want[i].m, want[i].mult)
		}
		if r.Pooled.Classifier.Runs != 4 || len(r.Digits) != 2 {
			t.Errorf("%s: %d runs pooled over %d digits, want 4 over 2", r.Method, r.Pooled.Classifier.Runs, len(r.Digits))
		}
		if r.Pooled.NFE <= 0 || r.Pooled.NFE > float64(r.Budget) {
			t.Errorf("%s at %dx spent %.1f NFE per image, budget %d", r.Method, r.Multiple, r.Pooled.NFE, r.Budget)
		}
	}
	var b strings.Builder
	tab.Print(&b)
	for _, w := range []string{"| base | 1x (10) |", "| bon (opt) | 2x (20) |", "| fk | 2x (20) |", "one base image is 10 NFE"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, b.String())
		}
	}
	if err := tab.WritePlot(&bytes.Buffer{}); err != nil {
		t.Error(err)
	}
}
