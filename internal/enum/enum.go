// Package enum parses the names users write for fksteer's string enums (flag values, config
// keys, manifest and scheduler_config.json values), so that every enum follows one rule:
//
//   - The match ignores case and surrounding space: "DDIM", " ddim" and "ddim" are one name.
//     Names are lower-case identifiers users type and copy between shells, configs and
//     diffusers' JSON, where a capital letter or a stray space is never a different intent.
//   - A parser may accept aliases (diffusers' spellings, short forms, "" for a default), matched
//     by the same rule. Aliases are neither listed nor suggested in messages: each names
//     something a valid name already names, and a long alias such as EulerDiscreteScheduler is
//     within typo distance of names that mean something else (LMSDiscreteScheduler).
//   - An unknown name is an [*Error] that lists the valid names and, for a likely typo, the
//     closest one ([keys.Closest]).
//
// It does not validate values built in code; a parser's result is the canonical constant,
// which is what code compares against.
package enum

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/internal/keys"
)

// Parse returns the element of valid that s names, by the package's case rule, or an [*Error]
// naming what (the user's word for the enum: "sampler", "resampling scheme").
func Parse[T ~string](what, s string, valid ...T) (T, error) {
	return ParseAliases(what, s, nil, valid...)
}

// ParseAliases is [Parse] that also accepts the keys of aliases, each standing for its value.
// Aliases follow the same case rule; an empty key makes an empty (or all-space) s name its
// value.
func ParseAliases[T ~string](what, s string, aliases map[string]T, valid ...T) (T, error) {
	in := strings.TrimSpace(s)
	for _, v := range valid {
		if strings.EqualFold(in, string(v)) {
			return v, nil
		}
	}
	for a, v := range aliases {
		if strings.EqualFold(in, a) {
			return v, nil
		}
	}
	e := &Error{What: what, Value: s, Valid: Names(valid...)}
	if in != "" {
		e.Suggestion = keys.Closest(in, e.Valid)
	}
	var zero T
	return zero, e
}

// Check returns nil if v is exactly one of valid, and otherwise an [*Error] without a
// suggestion. It is for values built in code rather than typed by a user: those are never
// re-spelt, so a typed constant written "Linear" is a mistake, not another spelling.
func Check[T ~string](what string, v T, valid ...T) error {
	if slices.Contains(valid, v) {
		return nil
	}
	return &Error{What: what, Value: string(v), Valid: Names(valid...)}
}

// Names returns the names of valid as strings, in order.
func Names[T ~string](valid ...T) []string {
	names := make([]string, len(valid))
	for i, v := range valid {
		names[i] = string(v)
	}
	return names
}

// Error reports a name that is not one of an enum's.
type Error struct {
	What  string // the enum, in the user's words: "sampler"
	Value string // the name as written
	// Suggestion is the valid name closest to Value when it is close enough to be a typo; ""
	// otherwise.
	Suggestion string
	Valid      []string // the valid names, in the enum's order
}

func (e *Error) Error() string {
	valid := strings.Join(e.Valid, ", ")
	if e.Suggestion != "" {
		return fmt.Sprintf("unknown %s %q (did you mean %q? valid: %s)", e.What, e.Value, e.Suggestion, valid)
	}
	return fmt.Sprintf("unknown %s %q (valid: %s)", e.What, e.Value, valid)
}
