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

func TestLevenshtein(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"kitten", "sitting", 3}, {"flaw", "lawn", 2}, {"steps", "stpes", 2}, {"ü", "u", 1}} {
		if got := Levenshtein(c.a, c.b); got != c.d {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}
