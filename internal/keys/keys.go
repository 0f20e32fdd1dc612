// Package keys checks user-written configuration for keys that nothing reads, so that a typo such
// as `stpes: 20` is an error naming the closest valid key instead of a silently ignored line.
package keys

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/agnivade/levenshtein"
)

// Check walks a decoded YAML/JSON document (maps with string keys) against the struct type typ,
// whose fields name their keys in `yaml` tags, and returns an error for the first key (in sorted
// order) the struct does not have. Nested structs, pointers to structs and slices of structs are
// followed; map-typed fields accept any key.
func Check(doc map[string]any, typ reflect.Type) error {
	return check(doc, typ, "")
}

func check(doc map[string]any, typ reflect.Type, prefix string) error {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct {
		return nil
	}
	fields := Fields(typ)
	names := make([]string, 0, len(doc))
	for k := range doc {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		ft, ok := fields[k]
		if !ok {
			valid := make([]string, 0, len(fields))
			for name := range fields {
				valid = append(valid, name)
			}
			return &UnknownKeyError{Key: prefix + k, Suggestion: Closest(k, valid), Valid: valid}
		}
		if err := checkValue(doc[k], ft, prefix+k); err != nil {
			return err
		}
	}
	return nil
}

func checkValue(v any, ft reflect.Type, path string) error {
	for ft.Kind() == reflect.Pointer {
		ft = ft.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		if ft.Kind() == reflect.Struct {
			return check(x, ft, path+".")
		}
	case []any:
		if ft.Kind() == reflect.Slice {
			for i, item := range x {
				if err := checkValue(item, ft.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Fields maps the yaml key of each exported field of a struct type to the field's type. Inline
// (`yaml:",inline"`) structs contribute their own keys.
func Fields(typ reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, t := range Fields(f.Type) {
				out[k] = t
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// UnknownKeyError reports a configuration key that fksteer does not read.
type UnknownKeyError struct {
	Key        string
	Suggestion string
	Valid      []string
}

func (e *UnknownKeyError) Error() string {
	if e.Suggestion != "" {
		return fmt.Sprintf("unknown key %q (did you mean %q?)", e.Key, e.Suggestion)
	}
	valid := slices.Clone(e.Valid)
	slices.Sort(valid)
	return fmt.Sprintf("unknown key %q (valid keys here: %s)", e.Key, strings.Join(valid, ", "))
}

// Closest returns the candidate nearest to s by edit distance, or "" when none is close enough
// to be a plausible typo (distance above a third of the longer word, at least 2).
//
// The distance comes from a library, not from rewards.Levenshtein: a leaf of internal/ must not
// import a feature package, and a private copy here would be the same maths twice.
func Closest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := levenshtein.ComputeDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	if bestD > max(2, max(len(s), len(best))/3) {
		return ""
	}
	return best
}
