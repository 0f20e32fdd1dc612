package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/onnxgraph"
)

// TestInvalidValuesAreUsageErrors: values outside their range, NaN and infinity are refused
// before any sampling with exit code 2 and a message naming the flag (or variable) and the valid
// range, instead of being accepted (negative eta drew pure noise), recorded (a NaN guidance in
// the PNG) or blamed on the model ("the model returned NaN ... the export is broken").
func TestInvalidValuesAreUsageErrors(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	prompts := writeFile(t, filepath.Join(dir, "prompts.txt"), "\"A\"\n\"B\"\n")
	gen := func(args ...string) []string {
		return append([]string{"generate", "--out", out, "--steps", "8", "--provider", "cpu"}, args...)
	}
	fk := func(args ...string) []string {
		return gen(append([]string{"--method", "fk", "--particles", "2", "--sampler", "ddim", "--eta", "1", "--reward", "color:target=#cc2222"}, args...)...)
	}
	cases := []struct {
		name  string
		args  []string
		env   []string
		wants []string
	}{
		{"negative eta", gen("--eta", "-1"), nil, []string{"eta -1 is not a noise level", "--eta", ">= 0"}},
		{"NaN eta", gen("--sampler", "ddim", "--eta", "NaN"), nil, []string{"eta NaN", "--eta"}},
		{"NaN guidance", gen("--guidance", "NaN"), nil, []string{"guidance NaN is not a finite number", "--guidance"}},
		{"infinite guidance", gen("--guidance", "Inf"), nil, []string{"guidance +Inf", "--guidance"}},
		{"negative interval", fk("--resample-every", "-1"), nil, []string{"--resample-every", "-1 is out of range", "at least 0"}},
		{"end past the steps", fk("--resample-end", "999"), nil, []string{"last resampling step 999", "last step, 7", "--resample-end"}},
		{"start past the steps", fk("--resample-start", "8"), nil, []string{"first resampling step 8", "0..7", "--resample-start"}},
		{"strength above 1", gen("--strength", "2"), nil, []string{"--strength", "2 is out of range", "(0, 1]"}},
		{"NaN strength", gen("--strength", "NaN"), nil, []string{"--strength", "NaN is out of range"}},
		{"class on a text model", gen("--class", "99"), nil, []string{"class 99 (--class) applies only to class-conditional models", "glyphs is conditioned on text"}},
		{"class below -1", gen("--class", "-5"), nil, []string{"--class", "-5 is out of range", "-1 = the class the prompt names"}},
		{"seed wraps around", gen("--seed", "18446744073709551615", "--num-images", "3"), nil, []string{"wraps around", "largest usable seed is 18446744073709551613", "--seed"}},
		{"negative workers", []string{"batch", "--prompts", prompts, "--out", out, "--workers", "-1"}, nil, []string{"--workers", "-1 is out of range", "at least 0"}},
		{"negative workers in the environment", []string{"batch", "--prompts", prompts, "--out", out}, []string{"FKSTEER_WORKERS=-1"}, []string{"environment variable FKSTEER_WORKERS", "-1 is out of range"}},
		{"NaN ESS threshold in a config file", []string{"generate", "--config", writeFile(t, filepath.Join(dir, "ess.yaml"), "ess-threshold: .nan\n")}, nil, []string{"ess.yaml: ess-threshold", "NaN is out of range", "[0, 1]"}},
		{"export seed wraps around", []string{"export", "--mode", "grpo", "--prompts", prompts, "--out", filepath.Join(dir, "ds"), "--steps", "4", "--sampler", "ddim", "--eta", "1",
			"--reward", "color:target=#cc2222", "--seed", "18446744073709551615"}, nil, []string{"largest usable seed is 18446744073709551614", "--seed"}},
		{"export negative eta", []string{"export", "--mode", "grpo", "--prompts", prompts, "--out", filepath.Join(dir, "ds"), "--steps", "4", "--sampler", "ddim", "--eta", "-1",
			"--reward", "color:target=#cc2222"}, nil, []string{"eta -1 is not a noise level", "--eta"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, e := range c.env {
				k, v, _ := strings.Cut(e, "=")
				t.Setenv(k, v)
			}
			code, _, stderr := cli(t, "", c.args...)
			wantError(t, code, stderr, exitUsage, c.wants...)
			if _, err := os.Stat(filepath.Join(out, fmt.Sprint(0)+".png")); err == nil {
				t.Error("a refused run wrote an image")
			}
		})
	}
}

// TestClassIdsAreCheckedAgainstTheModel: a class override outside a class-conditional model's
// classes, and a manifest's null class outside its ids, are refused with the valid ids before
// the model runs (exit 2), instead of failing inside ONNX Runtime.
func TestClassIdsAreCheckedAgainstTheModel(t *testing.T) {
	modeltest.Runtime(t)
	model := testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	manifest := mnistManifest(t, t.TempDir(), model)
	code, _, stderr := cli(t, "", "generate", "--model", manifest, "--class", "99", "--steps", "2", "--out", out)
	wantError(t, code, stderr, exitUsage, "class 99 (--class) is not one of mnist-dit-rf's classes: 0..9, or 10 for an unconditional sample")
	null99 := mnistManifest(t, t.TempDir(), model, "null_class: 10", "null_class: 99")
	code, _, stderr = cli(t, "", "generate", "--model", null99, "--steps", "2", "--out", out)
	wantError(t, code, stderr, exitUsage, "`conditioning.null_class` 99 is not a class id of this model: use 0..10")
	if strings.Contains(stderr, "Gather") {
		t.Errorf("the error comes from ONNX Runtime:\n%s", stderr)
	}
}

// TestUsageErrorsExitWith2: the mistakes README's table calls bad usage exit with 2, not 1: a
// config file's unknown key (as its type errors already did), a reward spec that cannot be
// built, and bench steer's --runs 0, which is refused before the first row runs.
func TestUsageErrorsExitWith2(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	typo := writeFile(t, filepath.Join(dir, "typo.yaml"), "stpes: 3\n")
	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), "steps: ten\n")
	for _, c := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"config typo", []string{"generate", "--config", typo}, []string{`unknown key "stpes"`, `did you mean "steps"`}},
		{"config type error", []string{"generate", "--config", bad}, []string{"steps", "not a whole number"}},
		{"unknown reward", []string{"generate", "--method", "bon", "--particles", "2", "--reward", "colour:target=#fff", "--out", dir}, []string{`unknown reward "colour"`}},
		{"bad reward option", []string{"generate", "--method", "bon", "--particles", "2", "--reward", "color:target=notacolour", "--out", dir}, []string{"color"}},
		{"bench runs 0", []string{"bench", "steer", "--runs", "0"}, []string{"--runs 0", "at least 1"}},
		{"bench budget 0", []string{"bench", "steer", "--budgets", "2,0"}, []string{"--budgets", "at least 1"}},
		{"bench digit 12", []string{"bench", "steer", "--digits", "3,12"}, []string{"--digits", "12 is not an MNIST digit"}},
		{"bench deterministic FK", []string{"bench", "steer", "--sampler", "euler"}, []string{"fk at 2x", "FK steering needs a stochastic sampler"}},
		{"bench end past the steps", []string{"bench", "steer", "--steps", "10", "--resample-end", "46"}, []string{"last resampling step 46", "--resample-end"}},
		{"bench override of the study's key", []string{"bench", "steer", "--set", "fk:particles=4"}, []string{"--set fk:particles", "the study sets particles itself"}},
		{"bench glyphs with digits", []string{"bench", "steer", "--glyphs-tv", "--digits", "3"}, []string{"--digits applies to the MNIST study"}},
		{"bench plot into no folder", []string{"bench", "steer", "--plot", filepath.Join(dir, "nowhere", "p.png")}, []string{"--plot", "does not exist"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := cli(t, "", c.args...)
			wantError(t, code, stderr, exitUsage, c.wants...)
			// bench validates every flag before it opens a model or prints its header.
			if strings.Contains(stderr, "bench steer: ") {
				t.Errorf("bench started before refusing its flags:\n%s", stderr)
			}
		})
	}
}

var (
	// flagLine is a help page's flag line with a placeholder: the flag, one space, and the
	// placeholder (a bool flag has none: its usage follows after several spaces).
	flagLine = regexp.MustCompile(`^\s+(?:-\w, )?--([\w-]+) (\S+)`)
	// placeholder is what a placeholder may be: pflag's type names, or a word in capitals.
	placeholder = regexp.MustCompile(`^(string|int|uint|float|stringArray|[A-Z][A-Z_]*)$`)
)

// TestHelpPlaceholders: no flag's placeholder on any help page is a word taken from backticks in
// its usage (pflag makes `fksteer models list` read as "--model fksteer").
func TestHelpPlaceholders(t *testing.T) {
	a := &app{v: newViper()}
	root := a.rootCommand()
	var walk func(*cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			seen++
			name, _ := pflag.UnquoteUsage(f)
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: placeholder %q comes from backticks in its usage %q", c.CommandPath(), f.Name, name, f.Usage)
			}
		})
		var help bytes.Buffer
		c.SetOut(&help)
		if err := c.Help(); err != nil {
			t.Fatal(err)
		}
		// The flag lines of the page's Flags and Global Flags sections (not its examples).
		inFlags := false
		for _, line := range strings.Split(help.String(), "\n") {
			switch {
			case strings.HasSuffix(line, "Flags:"):
				inFlags = true
				continue
			case line == "" || !strings.HasPrefix(line, " "):
				inFlags = false
			}
			m := flagLine.FindStringSubmatch(line)
			if !inFlags || m == nil {
				continue
			}
			if !placeholder.MatchString(m[2]) {
				t.Errorf("%s: --%s shows placeholder %q: %s", c.CommandPath(), m[1], m[2], strings.TrimSpace(line))
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if seen < 50 {
		t.Errorf("only %d flags checked; the walk missed commands", seen)
	}
}

// TestGenerateJSONAndProgress: generate --json reports the images it wrote in stats.images, and
// shows no progress when its streams are not terminals (tests, pipes); --progress bar draws the
// steps done of the whole run on stderr, and leaves stdout's JSON alone.
func TestGenerateJSONAndProgress(t *testing.T) {
	modeltest.Runtime(t)
	out := filepath.Join(t.TempDir(), "out")
	args := []string{"generate", "--prompt", `"A"`, "--num-images", "3", "--batch-size", "2", "--steps", "4", "--out", out, "--json", "--log-level", "warn", "--provider", "cpu"}
	code, stdout, stderr := cli(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		Images []json.RawMessage `json:"images"`
		Stats  struct {
			Images     int `json:"images"`
			ModelCalls int `json:"model_calls"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not the JSON result: %v\n%s", err, stdout)
	}
	if len(res.Images) != 3 || res.Stats.Images != 3 {
		t.Errorf("%d images listed, stats.images %d: want 3 and 3", len(res.Images), res.Stats.Images)
	}
	if stderr != "" {
		t.Errorf("stderr is not a terminal, yet generate wrote to it:\n%q", stderr)
	}
	code, stdout2, stderr := cli(t, "", append(args, "--progress", "bar")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// Two chunks (2 and 1 images) of 4 steps: 8 steps in all.
	if !strings.Contains(stderr, "8/8") || !strings.Contains(stderr, "steps") {
		t.Errorf("progress bar on stderr does not count 8 steps:\n%q", stderr)
	}
	var res2 struct {
		Images []json.RawMessage `json:"images"`
	}
	if err := json.Unmarshal([]byte(stdout2), &res2); err != nil || len(res2.Images) != 3 || string(res2.Images[0]) != string(res.Images[0]) {
		t.Errorf("with the bar, stdout is not the same JSON result (%v):\n%s", err, stdout2)
	}
}

// TestLongPromptsAreClippedInLogs: a log line repeats at most 200 characters of a prompt, with
// an ellipsis and the prompt's length, however long the prompt.
func TestLongPromptsAreClippedInLogs(t *testing.T) {
	modeltest.Runtime(t)
	prompt := `"A" ` + strings.Repeat("x", 20000)
	// Past the prompt limit, raised on purpose: the logs must stay short whatever it is.
	code, _, stderr := cli(t, "", "generate", "--prompt", prompt, "--max-prompt-chars", "30000", "--steps", "1", "--out", t.TempDir(), "--provider", "cpu")
	if code != 0 {
		t.Fatalf("exit %d: %.500s", code, stderr)
	}
	for _, line := range strings.Split(stderr, "\n") {
		if len(line) > 600 {
			t.Errorf("a stderr line of %d bytes: %.300s", len(line), line)
		}
	}
	if !strings.Contains(stderr, "… (20004 characters)") {
		t.Errorf("the generating line does not say the prompt was cut:\n%s", stderr)
	}
	if got := logText("short"); got != "short" {
		t.Errorf("logText(short) = %q", got)
	}
}

// TestRuntimeErrorsPrintOnlyFksteersMessage: an error inside ONNX Runtime (here a class id the
// manifest allows but the model's embedding does not hold) reaches stderr once, as fksteer's
// message, without ONNX Runtime's own coloured log line before it. ONNX Runtime writes to the
// process's stderr, so the CLI runs as a child process.
func TestRuntimeErrorsPrintOnlyFksteersMessage(t *testing.T) {
	modeltest.Runtime(t)
	model := testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	manifest := mnistManifest(t, t.TempDir(), model, `"9"]`, `"9", "x", "y"]`)
	cmd := exec.Command(os.Args[0], "generate", "--model", manifest, "--class", "11", "--steps", "2", "--out", t.TempDir(), "--provider", "cpu", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "FKSTEER_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	wantError(t, cmd.ProcessState.ExitCode(), stderr.String(), exitError, "Gather")
	if strings.Contains(stderr.String(), "onnxruntime") || strings.Contains(stderr.String(), "\x1b[") || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
		t.Errorf("stderr holds more than fksteer's one line:\n%q", stderr.String())
	}
}

// nanClassifier writes an image classifier for the glyphs model's 32x32 RGB images whose ten
// logits are all 0/0 = NaN, so every reward it gives is NaN.
func nanClassifier(t *testing.T, dir string) string {
	t.Helper()
	g := onnxgraph.New("nan-classifier", 17)
	x := g.Input("image", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(3), onnxgraph.Fixed(32), onnxgraph.Fixed(32))
	flat := g.Op("Flatten", []string{x}, onnxgraph.AttrInt("axis", 1))
	zeros := g.Op("MatMul", []string{flat, g.Initializer("w", []int64{3 * 32 * 32, 10}, make([]float32, 3*32*32*10))})
	g.Node("Div", []string{zeros, g.Initializer("zero", []int64{1}, []float32{0})}, []string{"logits"})
	g.Output("logits", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(10))
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, filepath.Join(dir, "nan.onnx"), string(data))
}

// TestExportWarnsOfMissingRewards: an export whose rewards are all NaN writes null statistics
// and says so in one warning line, instead of exiting silently with reward_mean 0.
func TestExportWarnsOfMissingRewards(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "ds")
	prompts := writeFile(t, filepath.Join(dir, "prompts.txt"), "\"A\"\n\"B\"\n")
	spec := "classifier:model=" + nanClassifier(t, dir) + ",target=0"
	code, _, stderr := cli(t, "", "export", "--mode", "grpo", "--prompts", prompts, "--out", out, "--samples", "2", "--steps", "4",
		"--sampler", "ddim", "--eta", "1", "--reward", spec, "--provider", "cpu")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var warnings []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "level=WARN") {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "without a finite reward") || !strings.Contains(warnings[0], "samples=4/4") {
		t.Errorf("warnings %q: want one naming 4 of 4 samples without a finite reward", warnings)
	}
	groups, err := os.ReadFile(filepath.Join(out, "groups.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(groups), `"reward_mean":null,"reward_std":null`); n != 2 {
		t.Errorf("%d of 2 groups have null statistics:\n%s", n, groups)
	}
}
