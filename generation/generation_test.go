package generation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/internal/keys"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
)

func TestMain(m *testing.M) { os.Exit(modeltest.Main(m)) }

func ptr[T any](v T) *T { return &v }

// TestPNGReproducesItself samples specs on the glyphs model, reads each output PNG back as a
// spec (its parameters chunk) and samples that spec: the PNG must come out byte for byte.
func TestPNGReproducesItself(t *testing.T) {
	modeltest.Runtime(t)
	env := &generation.Env{}
	t.Cleanup(func() { env.Close() })
	specs := map[string]generation.Spec{
		"base": {Prompt: `"A" on black`, Steps: 6, Seed: 5, Images: 2},
		"fk": {Prompt: `a red "B"`, Steps: 8, Method: "fk", Particles: 4, Reward: "color:target=#cc2222",
			Lambda: ptr(3.0), LambdaStart: 0.5, LambdaRamp: "linear", ESSThreshold: 0.5, Seed: 1 << 40},
		"fk-schedule": {Prompt: `"C"`, Steps: 10, Method: "fk", Particles: 3, Reward: "color:target=#2222cc",
			ResampleEvery: 2, ResampleStart: ptr(0), ResampleEnd: ptr(6), Resampler: "residual", Potential: "max", Seed: 7},
		"bon-all": {Prompt: `"D"`, Steps: 5, Sampler: "euler-a", Eta: ptr(0.5), Guidance: ptr(1.0), Method: "bon",
			Particles: 3, Select: "all", Reward: "color:target=#22cc22", Seed: 9},
		"svdd-budget": {Prompt: `"E"`, Steps: 6, Sampler: "ddim", Eta: ptr(1.0), Method: "svdd", Budget: 20,
			Alpha: 0.05, Reward: "color:target=#cc2222", Seed: 11},
		"beam": {Prompt: `"F"`, Steps: 6, Sampler: "ddim", Eta: ptr(1.0), Method: "beam", Particles: 2,
			Candidates: 3, BeamEvery: 2, Reward: "color:target=#cc2222", Seed: 12},
		"beam-budget": {Prompt: `"F"`, Steps: 6, Sampler: "ddim", Eta: ptr(1.0), Method: "beam", Budget: 40,
			Reward: "color:target=#cc2222", Seed: 13},
		"noise": {Prompt: `"G"`, Steps: 4, Sampler: "euler", Method: "noise", Neighbours: 3, Rounds: 2,
			NoiseScale: 0.3, Particles: 2, Select: "all", Reward: "color:target=#cc2222", Seed: 14},
		"random-budget": {Prompt: `"H"`, Steps: 4, Sampler: "euler", Method: "random", Budget: 12,
			Reward: "color:target=#cc2222", Seed: 15},
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			written := sample(t, env, spec, dir)
			for _, w := range written {
				back, err := generation.ReadSpec(w.Path)
				if err != nil {
					t.Fatal(err)
				}
				again := sample(t, env, back, t.TempDir())
				var found bool
				for _, a := range again {
					if filepath.Base(a.Path) == filepath.Base(w.Path) {
						found = true
						want, err1 := os.ReadFile(w.Path)
						got, err2 := os.ReadFile(a.Path)
						if err := errors.Join(err1, err2); err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(got, want) {
							t.Errorf("%s regenerated from its own parameters differs; spec read back: %+v", filepath.Base(w.Path), back)
						}
					}
				}
				if !found {
					t.Errorf("regenerating %s wrote %d other files", filepath.Base(w.Path), len(again))
				}
			}
		})
	}
}

func sample(t *testing.T, env *generation.Env, spec generation.Spec, dir string) []generation.Written {
	t.Helper()
	res, err := env.Generate(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	w, err := res.WriteImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestChunksDoNotChangeImages samples a spec's images at once and in chunks of one: the images
// of equal seeds are identical, as sampler.Run promises and generate's chunking relies on.
func TestChunksDoNotChangeImages(t *testing.T) {
	modeltest.Runtime(t)
	env := &generation.Env{}
	t.Cleanup(func() { env.Close() })
	run, err := env.Prepare(context.Background(), generation.Spec{Prompt: `"E"`, Steps: 6, Images: 3, Method: "fk", Particles: 3, Reward: "color:target=#cc2222"})
	if err != nil {
		t.Fatal(err)
	}
	whole, err := run.Sample(context.Background(), 0, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		one, err := run.Sample(context.Background(), i, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := whole.PNG(i)
		b, _ := one.PNG(0)
		if !bytes.Equal(a, b) {
			t.Errorf("image %d sampled alone differs from the same image sampled with the others", i)
		}
	}
}

// TestSpecErrors: a spec the user must change fails with a *generation.SpecError (or the
// sampler's *ConfigError) naming what to change, before any sampling.
func TestSpecErrors(t *testing.T) {
	modeltest.Runtime(t)
	env := &generation.Env{Limits: generation.Limits{Steps: 50, Particles: 8, PromptChars: 20}}
	t.Cleanup(func() { env.Close() })
	for _, c := range []struct {
		name string
		spec generation.Spec
		want string
	}{
		{"steps over the limit", generation.Spec{Steps: 51}, "--max-steps"},
		{"particles over the limit", generation.Spec{Particles: 9}, "--max-particles"},
		{"long prompt", generation.Spec{Prompt: "a prompt of more than twenty characters"}, "--max-prompt-chars"},
		{"NUL in the prompt", generation.Spec{Prompt: "a\x00b"}, "NUL"},
		{"unknown sampler", generation.Spec{Sampler: "heun"}, "sampler"},
		{"unknown method", generation.Spec{Method: "mcts"}, "method"},
		{"fk without reward", generation.Spec{Method: "fk", Particles: 2}, "reward"},
		{"bad reward", generation.Spec{Reward: "colour:target=#fff"}, "color"},
		{"sd option on glyphs", generation.Spec{Width: 64}, "Stable Diffusion"},
		{"init image on glyphs", generation.Spec{InitImage: "x.png"}, "init-image"},
		{"bare onnx", generation.Spec{Model: "model.onnx"}, "manifest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := env.Prepare(context.Background(), c.spec)
			var se *generation.SpecError
			var ce *sampler.ConfigError
			if !errors.As(err, &se) && !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a spec error", err, err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
				t.Errorf("error %q does not name %q", err, c.want)
			}
		})
	}
}

// TestDecodeSpec reads YAML and JSON specs and refuses unknown keys with a suggestion.
func TestDecodeSpec(t *testing.T) {
	y, err := generation.DecodeSpec([]byte("prompt: '\"A\"'\nsteps: 12\nmethod: fk\nparticles: 4\nlambda: 0\nresample-start: 0\nreward: color:target=#cc2222\n"))
	if err != nil {
		t.Fatal(err)
	}
	if y.Prompt != `"A"` || y.Steps != 12 || y.Particles != 4 || y.Lambda == nil || *y.Lambda != 0 || y.ResampleStart == nil || *y.ResampleStart != 0 {
		t.Errorf("YAML spec read as %+v", y)
	}
	j, err := generation.DecodeSpec([]byte(`{"prompt": "\"A\"", "steps": 12, "method": "fk", "particles": 4, "lambda": 0, "resample-start": 0, "reward": "color:target=#cc2222"}`))
	if err != nil {
		t.Fatal(err)
	}
	if j.Prompt != y.Prompt || j.Steps != y.Steps || *j.Lambda != *y.Lambda || *j.ResampleStart != *y.ResampleStart || j.Reward != y.Reward {
		t.Errorf("JSON spec %+v differs from the same YAML spec %+v", j, y)
	}
	_, err = generation.DecodeSpec([]byte("stpes: 3\n"))
	var uk *keys.UnknownKeyError
	if !errors.As(err, &uk) || uk.Suggestion != "steps" {
		t.Errorf("unknown key: got %v, want a suggestion of steps", err)
	}
	// Map and DecodeSpec are inverse: a spec written as its map reads back the same.
	m := y.Map()
	if len(m) != 7 {
		t.Errorf("Map of a spec setting 7 keys has %d: %v", len(m), m)
	}
}

// TestModelBytesEvictsLeastRecentlyUsed: with a memory bound smaller than any model, opening a
// model closes the least recently used ones no Run holds, and never one a Run holds.
func TestModelBytesEvictsLeastRecentlyUsed(t *testing.T) {
	modeltest.Runtime(t)
	mnist := filepath.Join(testenv.SharedDir(), "models", "mnist-dit-rf", "model.onnx")
	if _, err := os.Stat(mnist); err != nil {
		t.Skipf("the MNIST DiT is not in ../shared: %v", err)
	}
	example, err := os.ReadFile(filepath.Join("..", "examples", "mnist-dit-rf.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(t.TempDir(), "mnist.yaml")
	text := bytes.Replace(example, []byte("../../shared/models/mnist-dit-rf/model.onnx"), []byte(mnist), 1)
	if err := os.WriteFile(manifest, text, 0o644); err != nil {
		t.Fatal(err)
	}
	env := &generation.Env{ModelBytes: 1}
	t.Cleanup(func() { env.Close() })
	ctx := context.Background()
	glyphs, err := env.Prepare(ctx, generation.Spec{Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	digits, err := env.Prepare(ctx, generation.Spec{Model: manifest, Prompt: "3", Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	if n := env.Open(); n != 2 {
		t.Errorf("%d models open while two Runs hold one each, want 2", n)
	}
	if _, err := glyphs.Sample(ctx, 0, 1, nil); err != nil {
		t.Errorf("a held model was closed under its Run: %v", err)
	}
	digits.Close()
	// A model not yet open makes room: every model no Run holds is closed (each is over the
	// bound), the held glyphs model stays.
	copyOf := filepath.Join(t.TempDir(), "mnist-copy.yaml")
	if err := os.WriteFile(copyOf, text, 0o644); err != nil {
		t.Fatal(err)
	}
	third, err := env.Prepare(ctx, generation.Spec{Model: copyOf, Prompt: "4", Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	if n := env.Open(); n != 2 {
		t.Errorf("%d models open, want 2: the held glyphs and the new one (the unheld MNIST closed)", n)
	}
	if _, err := glyphs.Sample(ctx, 0, 1, nil); err != nil {
		t.Errorf("the held glyphs model was closed: %v", err)
	}
	glyphs.Close()
	third.Close()
	last, err := env.Prepare(ctx, generation.Spec{Model: manifest, Prompt: "5", Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer last.Close()
	if n := env.Open(); n != 1 {
		t.Errorf("%d models open after opening one more with none held, want 1", n)
	}
	if _, err := last.Sample(ctx, 0, 1, nil); err != nil {
		t.Error(err)
	}
}

// TestList lists the built-in model first, configured models sorted with whether their file
// exists, then the catalog; it builds and downloads nothing.
func TestList(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(mine, []byte("name: mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := &generation.Env{Models: map[string]string{"zeta": mine, "alpha": filepath.Join(dir, "gone.yaml")}}
	list, err := env.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) < 3 || list[0].Name != "glyphs" || !list[0].Ready {
		t.Fatalf("list starts %+v", list[:min(3, len(list))])
	}
	if a, z := list[1], list[2]; a.Name != "alpha" || a.Status != "missing" || a.Ready || z.Name != "zeta" || z.Status != "ready" || !z.Ready {
		t.Errorf("configured models listed as %+v and %+v", a, z)
	}
	for _, l := range list[3:] {
		if l.Kind != generation.KindCatalog || (l.Status == "not pulled") == l.Ready {
			t.Errorf("catalog entry %+v", l)
		}
	}
}

// TestPartsWithNaNEncode: a part that could not score (NaN) is written as null, where a plain
// float64 made encoding/json fail the whole output, and reads back as NaN.
func TestPartsWithNaNEncode(t *testing.T) {
	parts := generation.Parts([]rewards.PartScore{{Name: "ocr", Weight: 0.5, Score: math.NaN(), HasText: true}, {Name: "color", Weight: 0.5, Score: 0.25}})
	data, err := json.Marshal(generation.Written{Path: "x.png", Parts: parts})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"score":null`)) || !bytes.Contains(data, []byte(`"score":0.25`)) {
		t.Errorf("encoded as %s", data)
	}
	var back generation.Written
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(float64(back.Parts[0].Score)) || back.Parts[1].Score != 0.25 || *back.Parts[0].Text != "" {
		t.Errorf("read back as %+v", back.Parts)
	}
}
