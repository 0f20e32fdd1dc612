package keys

import (
	"errors"
	"reflect"
	"testing"
)

type inner struct {
	Kind string `yaml:"kind"`
	Null int    `yaml:"null"`
}

type outer struct {
	Name  string            `yaml:"name"`
	Steps int               `yaml:"steps"`
	Cond  *inner            `yaml:"conditioning"`
	List  []inner           `yaml:"list"`
	Extra map[string]string `yaml:"extra"`
}

func TestCheck(t *testing.T) {
	typ := reflect.TypeOf(outer{})
	ok := map[string]any{"name": "x", "steps": 3, "conditioning": map[string]any{"kind": "class"}, "extra": map[string]any{"anything": 1}}
	if err := Check(ok, typ); err != nil {
		t.Fatalf("valid document rejected: %v", err)
	}
	cases := []struct {
		doc        map[string]any
		key, guess string
	}{
		{map[string]any{"stpes": 3}, "stpes", "steps"},
		{map[string]any{"conditioning": map[string]any{"nul": 10}}, "conditioning.nul", "null"},
		{map[string]any{"list": []any{map[string]any{"kind": "a"}, map[string]any{"knd": "b"}}}, "list[1].knd", "kind"},
		{map[string]any{"zzzzzzzz": 1}, "zzzzzzzz", ""},
	}
	for _, c := range cases {
		err := Check(c.doc, typ)
		var u *UnknownKeyError
		if !errors.As(err, &u) || u.Key != c.key || u.Suggestion != c.guess {
			t.Errorf("Check(%v) = %v, want key %q suggestion %q", c.doc, err, c.key, c.guess)
		}
	}
}

// TestClosest pins the suggestions: case is ignored, distance counts runes, a tie goes to the
// alphabetically first candidate, and a word too far from every candidate (more than a third of
// its length in bytes, and more than 2) gets none.
func TestClosest(t *testing.T) {
	valid := []string{"steps", "seed", "sampler", "größe"}
	for _, c := range []struct {
		s          string
		candidates []string
		want       string
	}{
		{"stpes", valid, "steps"},        // a transposition is 2 edits, within the floor of 2
		{"STEPS", valid, "steps"},        // case does not count
		{"seeds", valid, "seed"},         // 1 deletion beats steps' 2 substitutions
		{"grösse", valid, "größe"},       // ß for s and one s less: 2 edits, counted in runes
		{"samplerzzz", valid, "sampler"}, // 3 edits in 10 bytes: within a third
		{"samplerzzzz", valid, ""},       // 4 edits in 11 bytes: too far
		{"zzzzzzzz", valid, ""},          // 8 edits from everything
		{"caz", []string{"cat", "car"}, "car"},
	} {
		if got := Closest(c.s, c.candidates); got != c.want {
			t.Errorf("Closest(%q, %q) = %q, want %q", c.s, c.candidates, got, c.want)
		}
	}
}
