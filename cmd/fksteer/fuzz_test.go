package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/batch"
)

// The configuration's parsers, fuzzed through the code the CLI runs: `fksteer config show
// --json` reads the config file (readConfigFile), checks the environment (checkEnv) and types
// every value (checkValues, convert), as every command does before it starts. Seeds:
// testdata/fuzz/FuzzConfigFile, FuzzConfigEnv and FuzzItemOverrides.

// FuzzConfigFile runs `config show --json` on an arbitrary config file. Properties: no panic;
// exit 0, or 1 or 2 with one "fksteer: " line and no stack trace; and what is accepted
// round-trips: every value config show reports from the file, written back as a config file,
// is shown again with the same value and source.
func FuzzConfigFile(f *testing.F) {
	// The working folder changes inside the target: the seed corpus is read relative to it.
	dir := f.TempDir()
	clearConfigEnv(f)
	path := filepath.Join(dir, "fksteer.yaml")
	f.Fuzz(func(t *testing.T, text []byte) {
		t.Chdir(dir)
		if err := os.WriteFile(path, text, 0o644); err != nil {
			t.Fatal(err)
		}
		first, ok := showConfig(t)
		if !ok {
			return
		}
		var back bytes.Buffer
		for _, r := range first.Settings {
			if r.Source == fromFile {
				back.WriteString(r.Key + ": " + string(r.Value) + "\n")
			}
		}
		if len(first.Models) > 0 {
			m, _ := json.Marshal(first.Models)
			back.WriteString(modelsKey + ": " + string(m) + "\n")
		}
		if err := os.WriteFile(path, back.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		second, ok := showConfig(t)
		if !ok {
			t.Fatalf("config written back from what config show reported is rejected:\n%s", back.String())
		}
		sameShown(t, first, second, back.String())
	})
}

// FuzzConfigEnv runs `config show --json` with one arbitrary FKSTEER_<name>=value variable set
// and no config file. Properties: no panic; exit 0, or 1 or 2 with one "fksteer: " line and no
// stack trace; and an accepted value round-trips: the value config show reports, set as the
// variable, is shown again the same.
func FuzzConfigEnv(f *testing.F) {
	dir := f.TempDir()
	clearConfigEnv(f)
	f.Fuzz(func(t *testing.T, name, value string) {
		t.Chdir(dir)
		env := envPrefix + name
		if _, special := envNotKeys[env]; special || strings.ContainsAny(env, "=\x00") || strings.Contains(value, "\x00") {
			t.Skip("not a variable a config key reads, or not one a process can hold")
		}
		t.Setenv(env, value)
		first, ok := showConfig(t)
		if !ok {
			return
		}
		for _, r := range first.Settings {
			if r.Source != fromEnv {
				continue
			}
			if r.Env != env {
				t.Fatalf("%s shown from %s, but only %s is set", r.Key, r.Env, env)
			}
			text := envText(t, r.Value)
			if text == "" {
				return // an empty list: written back, the variable would be empty, which means unset
			}
			t.Setenv(env, text)
		}
		second, ok := showConfig(t)
		if !ok {
			t.Fatalf("%s=%q, as config show reported it, is rejected", env, os.Getenv(env))
		}
		sameShown(t, first, second, env+"="+os.Getenv(env))
	})
}

// FuzzItemOverrides reads an arbitrary JSONL items file and checks each item's overrides as
// batch does (newOverlay, which types them with convert). Properties: no panic; an accepted
// override is one a batch item may vary, and the overlay reads it back with its key's type.
func FuzzItemOverrides(f *testing.F) {
	v := newViper()
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := batch.ReadJSONL(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, it := range items {
			o, err := newOverlay(v, it.Overrides)
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("item %s: message spans lines: %q", it.ID, err)
				}
				continue
			}
			for k, val := range o.vals {
				s, ok := lookup(k)
				if !ok || !s.perItem {
					t.Fatalf("item %s: override %s accepted, but an item may not vary it", it.ID, k)
				}
				if typed, err := convert(val, s.def); err != nil || !sameValue(typed, val) {
					t.Fatalf("item %s: override %s=%v is not stable under convert: %v, %v", it.ID, k, val, typed, err)
				}
				if !o.IsSet(k) {
					t.Fatalf("item %s: override %s is not set", it.ID, k)
				}
			}
		}
	})
}

// clearConfigEnv unsets the FKSTEER_ variables that name config keys (TestMain sets
// FKSTEER_ORT_LIB), so that each run sees only what the fuzzer gives it.
func clearConfigEnv(tb testing.TB) {
	for _, k := range allKeys() {
		if _, ok := os.LookupEnv(envName(k)); ok {
			tb.Setenv(envName(k), "")
			os.Unsetenv(envName(k))
		}
	}
	tb.Setenv("FKSTEER_CONFIG", "")
	os.Unsetenv("FKSTEER_CONFIG")
}

// rawShown is `config show --json` with values kept as JSON text.
type rawShown struct {
	ConfigFile string `json:"config_file"`
	Settings   []struct {
		Key    string          `json:"key"`
		Value  json.RawMessage `json:"value"`
		Source string          `json:"source"`
		Env    string          `json:"env"`
	} `json:"settings"`
	Models map[string]string `json:"models"`
}

// showConfig runs `config show --json` in the current folder. It reports false for a clean
// failure and fails t for anything else.
func showConfig(t *testing.T) (rawShown, bool) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"config", "show", "--json"}, &out, &errb)
	stderr := errb.String()
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Fatalf("exit %d with a stack trace:\n%s", code, stderr)
	}
	if code != exitOK {
		if code != exitError && code != exitUsage {
			t.Fatalf("exit %d, want 0, 1 or 2; stderr:\n%s", code, stderr)
		}
		if lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "fksteer: ") {
			t.Fatalf("exit %d with %d lines of stderr, want one \"fksteer: \" line:\n%s", code, len(lines), stderr)
		}
		return rawShown{}, false
	}
	var s rawShown
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("config show --json printed invalid JSON: %v\n%s", err, out.String())
	}
	return s, true
}

// sameShown fails t unless b shows every setting and model of a with the same value and source.
func sameShown(t *testing.T, a, b rawShown, input string) {
	t.Helper()
	if len(a.Settings) != len(b.Settings) {
		t.Fatalf("%d settings, then %d", len(a.Settings), len(b.Settings))
	}
	for i, x := range a.Settings {
		y := b.Settings[i]
		if x.Key != y.Key || x.Source != y.Source || !sameRaw(x.Value, y.Value) {
			t.Fatalf("%s = %s from %s, then %s = %s from %s after writing back\n%s", x.Key, x.Value, x.Source, y.Key, y.Value, y.Source, input)
		}
	}
	if len(a.Models) != len(b.Models) {
		t.Fatalf("models %v, then %v", a.Models, b.Models)
	}
	for k, v := range a.Models {
		if b.Models[k] != v {
			t.Fatalf("models %v, then %v", a.Models, b.Models)
		}
	}
}

// sameRaw compares two JSON values as values (an invalid byte shown as "\ufffd" equals the
// U+FFFD written back), with numbers compared exactly.
func sameRaw(a, b json.RawMessage) bool {
	decode := func(raw json.RawMessage) (any, error) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		return v, dec.Decode(&v)
	}
	x, errx := decode(a)
	y, erry := decode(b)
	return errx == nil && erry == nil && reflect.DeepEqual(x, y)
}

// envText is how a user would write a value config show reported (as JSON) in a variable: a
// string as itself, a list comma-separated, anything else as its JSON text.
func envText(t *testing.T, raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return strings.Join(list, ",")
	}
	if slices.Contains([]string{"null", ""}, string(raw)) {
		t.Fatalf("config show reported %q for a variable's value", raw)
	}
	return string(raw)
}

// sameValue compares typed setting values as printed (so that NaN equals NaN).
func sameValue(a, b any) bool { return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b) }
