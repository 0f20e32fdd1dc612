package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
)

type shown struct {
	ConfigFile string            `json:"config_file"`
	Settings   []shownSetting    `json:"settings"`
	Models     map[string]string `json:"models"`
}

func configShow(t *testing.T, dir string, args ...string) (shown, map[string]shownSetting) {
	t.Helper()
	code, stdout, stderr := cli(t, dir, append([]string{"config", "show", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("config show: exit %d: %s", code, stderr)
	}
	var s shown
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("config show --json: %v\n%s", err, stdout)
	}
	byKey := map[string]shownSetting{}
	for _, r := range s.Settings {
		byKey[r.Key] = r
	}
	return s, byKey
}

// want checks one key's value (compared as JSON text) and source.
func want(t *testing.T, got map[string]shownSetting, key, value, source string) {
	t.Helper()
	r, ok := got[key]
	if !ok {
		t.Fatalf("config show lacks %s", key)
	}
	v, _ := json.Marshal(r.Value)
	if string(v) != value || r.Source != source {
		t.Errorf("%s = %s from %s, want %s from %s", key, v, r.Source, value, source)
	}
}

// TestConfigPrecedence sets steps in the file, the environment and a flag, and checks that each
// layer wins over the ones below it and that config show names the source.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fksteer.yaml"), "steps: 3\nprompt: from the file\nseed: 5\nlambda: 2.5\n")
	t.Setenv("FKSTEER_STEPS", "4")
	t.Setenv("FKSTEER_PROMPT", "from the env")

	s, got := configShow(t, dir, "--steps", "5")
	if s.ConfigFile != "fksteer.yaml" {
		t.Errorf("config file %q", s.ConfigFile)
	}
	want(t, got, "steps", "5", "flag")
	want(t, got, "prompt", `"from the env"`, "env")
	want(t, got, "seed", "5", "file")
	want(t, got, "lambda", "2.5", "file")
	want(t, got, "resample-every", "0", "default")
	want(t, got, "guidance", "null", "unset")
	if got["steps"].Env != "FKSTEER_STEPS" || got["num-images"].Env != "FKSTEER_NUM_IMAGES" {
		t.Errorf("env names %s, %s", got["steps"].Env, got["num-images"].Env)
	}

	_, got = configShow(t, dir)
	want(t, got, "steps", "4", "env")
	os.Unsetenv("FKSTEER_STEPS")
	_, got = configShow(t, dir)
	want(t, got, "steps", "3", "file")
	os.Unsetenv("FKSTEER_PROMPT")
	other := t.TempDir()
	s, got = configShow(t, other)
	want(t, got, "steps", "null", "unset")
	want(t, got, "prompt", `""`, "default")
	if s.ConfigFile != "" {
		t.Errorf("config file %q without one", s.ConfigFile)
	}

	// --config and FKSTEER_CONFIG name a file anywhere.
	writeFile(t, filepath.Join(other, "c.yaml"), "steps: 9\n")
	_, got = configShow(t, dir, "--config", filepath.Join(other, "c.yaml"))
	want(t, got, "steps", "9", "file")
	t.Setenv("FKSTEER_CONFIG", filepath.Join(other, "c.yaml"))
	_, got = configShow(t, dir)
	want(t, got, "steps", "9", "file")
}

// TestConfigReachesGenerate checks that what config show reports is what generate uses: the
// environment's steps over the file's, recorded in the image.
func TestConfigReachesGenerate(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fksteer.yaml"), "steps: 3\nprompt: '\"K\"'\nseed: 21\n")
	t.Setenv("FKSTEER_STEPS", "4")
	code, stdout, stderr := cli(t, dir, "generate", "--out", "out")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, strings.TrimSpace(stdout)))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := pngtext.Read(bytes.NewReader(data))
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Text, "\"K\"\n") || !strings.Contains(entries[0].Text, "Steps: 4,") || !strings.Contains(entries[0].Text, "Seed: 21") {
		t.Errorf("parameters %v: want the file's prompt and seed and the environment's steps", entries)
	}
}

func TestConfigShowText(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fksteer.yaml"), "seed: 5\nmodels:\n  mnist: ../examples/mnist-dit-rf.yaml\n")
	t.Setenv("FKSTEER_PROMPT", "hi")
	code, stdout, stderr := cli(t, dir, "config", "show", "--steps", "7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, line := range []string{
		"# Config file: fksteer.yaml",
		"steps: 7 ", "# flag --steps",
		"prompt: hi ", "# env FKSTEER_PROMPT",
		"seed: 5 ", "# file fksteer.yaml",
		"lambda: 10 ", "# default",
		"# guidance:  (unset: the model's recommended value)",
		"models:  # file fksteer.yaml", "  mnist: " + filepath.Join(dir, "..", "examples", "mnist-dit-rf.yaml"),
	} {
		if !strings.Contains(stdout, line) {
			t.Errorf("config show lacks %q:\n%s", line, stdout)
		}
	}
}

func TestUnknownKeysAndBadValues(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "typo.yaml"), "prompt: hi\nstpes: 3\n")
	writeFile(t, filepath.Join(dir, "far.yaml"), "completely-unrelated: 1\n")
	writeFile(t, filepath.Join(dir, "value.yaml"), "steps: ten\n")
	writeFile(t, filepath.Join(dir, "models.yaml"), "models: just-a-string\n")
	cases := []struct {
		name  string
		args  []string
		env   []string
		code  int
		wants []string
	}{
		{"file typo", []string{"--config", "typo.yaml"}, nil, exitUsage, []string{"config typo.yaml", `unknown key "stpes"`, `did you mean "steps"`}},
		{"file unknown", []string{"--config", "far.yaml"}, nil, exitUsage, []string{`unknown key "completely-unrelated"`, "valid keys here:"}},
		{"file value", []string{"--config", "value.yaml"}, nil, exitUsage, []string{"steps", `"ten" is not a whole number`}},
		{"file models", []string{"--config", "models.yaml"}, nil, exitError, []string{"models must map model names"}},
		{"missing file", []string{"--config", "nope.yaml"}, nil, exitUsage, []string{"config file nope.yaml does not exist"}},
		{"env typo", nil, []string{"FKSTEER_STPES=3"}, exitUsage, []string{"FKSTEER_STPES", "did you mean FKSTEER_STEPS"}},
		{"env value", nil, []string{"FKSTEER_STEPS=ten"}, exitUsage, []string{"FKSTEER_STEPS", "not a whole number"}},
		{"env bool", nil, []string{"FKSTEER_JSON=yes please"}, exitUsage, []string{"FKSTEER_JSON", "not true or false"}},
		{"env negative seed", nil, []string{"FKSTEER_SEED=-1"}, exitUsage, []string{"FKSTEER_SEED", "non-negative"}},
		{"env models", nil, []string{"FKSTEER_MODELS=x"}, exitUsage, []string{"only be set in a config file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, e := range c.env {
				k, v, _ := strings.Cut(e, "=")
				t.Setenv(k, v)
			}
			code, _, stderr := cli(t, dir, append([]string{"config", "show"}, c.args...)...)
			wantError(t, code, stderr, c.code, c.wants...)
		})
	}
}

// TestExampleConfigDocumentsEveryKey checks that docs/fksteer.yaml is what `config example`
// prints, that it names and explains every key, and that it loads as a config file that sets
// every key it does not comment out.
func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "fksteer.yaml")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := cli(t, "", "config", "example")
	if code != 0 || stdout != string(doc) {
		t.Fatalf("docs/fksteer.yaml differs from `fksteer config example`; regenerate it with: go run ./cmd/fksteer config example > docs/fksteer.yaml")
	}
	for _, g := range groups {
		for _, s := range g.settings {
			if !strings.Contains(string(doc), "\n"+s.key+": ") && !strings.Contains(string(doc), "\n# "+s.key+": ") {
				t.Errorf("docs/fksteer.yaml does not set %s", s.key)
			}
			if !strings.Contains(string(doc), strings.Fields(s.usage)[0]) {
				t.Errorf("docs/fksteer.yaml does not explain %s", s.key)
			}
		}
	}
	abs, _ := filepath.Abs(path)
	_, got := configShow(t, t.TempDir(), "--config", abs)
	for key, r := range got {
		if key == "json" || os.Getenv(envName(key)) != "" {
			continue // set by this test's --json flag or the test environment
		}
		s, _ := lookup(key)
		if wantSrc := map[bool]string{true: "unset", false: "file"}[s.modelDefault]; r.Source != wantSrc {
			t.Errorf("%s comes from %s with the example config, want %s", key, r.Source, wantSrc)
		}
	}
}

// TestConfiguredModels checks the config file's models map: listed by models list, and usable
// as --model.
func TestConfiguredModels(t *testing.T) {
	modeltest.Runtime(t)
	model := testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	dir := t.TempDir()
	mnistManifest(t, dir, model)
	writeFile(t, filepath.Join(dir, "fksteer.yaml"), "models:\n  Digits: m.yaml\n")
	code, stdout, stderr := cli(t, dir, "models", "list", "--json")
	if code != 0 {
		t.Fatalf("models list: exit %d: %s", code, stderr)
	}
	var rows []generation.Listing
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rows {
		if r.Name == "digits" && r.Kind == "configured" && r.Status == "ready" && r.Path == filepath.Join(dir, "m.yaml") {
			found = true
		}
	}
	if !found {
		t.Errorf("models list does not show the configured model: %+v", rows)
	}
	code, stdout, stderr = cli(t, dir, "generate", "--model", "digits", "--prompt", "3", "--steps", "4", "--out", "out")
	if code != 0 || !strings.Contains(stdout, "0.png") {
		t.Errorf("generate --model digits: exit %d: %s %s", code, stdout, stderr)
	}
}
