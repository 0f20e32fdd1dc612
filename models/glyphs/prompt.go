package glyphs

import (
	"slices"
	"strings"
	"unicode"
)

// LogZero is the prior log-weight of an image the prompt rules out. It is not -Inf: a softmax
// over a row of -Inf is NaN (its max is -Inf, and -Inf - -Inf is NaN), and -Inf times zero is
// NaN too. Nor is it -MaxFloat32: adding the likelihood term (up to about 1e13 in size once t is
// clamped at MinT) must not overflow, in float32 as in float64. -1e30 leaves that room, is far
// below any likelihood term (float32 numbers near 1e30 are 7.6e22 apart, so in float32 the sum
// simply stays -1e30), and its weight after the softmax's max subtraction is exactly 0.
const LogZero float32 = -1e30

// Query is what a prompt asks for. Each list holds alternatives: an image must have one of the
// listed texts (if any are listed), one of the listed colours (if any), and one of the listed
// backgrounds (if any).
type Query struct {
	Texts       []string // compared with Item.Text ignoring case; may hold texts no image has
	Colors      []string // text colour names; may hold colours no text has, such as "navy"
	Backgrounds []string // background colour names; may hold colours no background has
}

// Empty reports whether the query constrains nothing.
func (q Query) Empty() bool {
	return len(q.Texts) == 0 && len(q.Colors) == 0 && len(q.Backgrounds) == 0
}

// Selection is the set of images a prompt selects.
type Selection struct {
	Query Query
	Mask  []bool // Mask[i] reports whether image i is selected; length M
	N     int    // number of selected images
	// Matched is false when the prompt constrains nothing or no image satisfies it; every image
	// is then selected, and N is M.
	Matched bool
}

// LogPrior returns the prior log-weights over the M images: 0 for a selected image, LogZero for
// the others. It is the `prior` input of the denoiser for one batch row.
func (s Selection) LogPrior() []float32 {
	lp := make([]float32, len(s.Mask))
	for i, on := range s.Mask {
		if !on {
			lp[i] = LogZero
		}
	}
	return lp
}

// colorWords maps the colour words of prompts to colour names.
var colorWords = map[string]string{
	"red": "red", "green": "green", "blue": "blue", "yellow": "yellow", "white": "white",
	"black": "black", "gray": "gray", "grey": "gray", "navy": "navy",
}

// articles may stand between "on" and a background colour.
var articles = map[string]bool{"a": true, "an": true, "the": true}

// ParsePrompt reads a prompt by the rule in the package documentation.
func ParsePrompt(prompt string) Query {
	var (
		q      Query
		quoted bool
	)
	p := strings.ToLower(prompt)
	p = strings.NewReplacer("\u201c", `"`, "\u201d", `"`).Replace(p) // typographic quotes
	if i := strings.IndexByte(p, '"'); i >= 0 {
		if j := strings.IndexByte(p[i+1:], '"'); j >= 0 {
			if text := strings.TrimSpace(p[i+1 : i+1+j]); text != "" {
				q.Texts, quoted = []string{canonicalText(text)}, true
			}
			// The quoted text is no word of the prompt: `"red"` is a text, not a colour. A
			// placeholder keeps its neighbours apart (`on "A" black` has no "on black").
			p = p[:i] + " \x00 " + p[i+1+j+1:]
		}
	}
	words := strings.FieldsFunc(p, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != 0 })
	for k, w := range words {
		if name, ok := colorWords[w]; ok {
			if isBackground(words, k) {
				q.Backgrounds = appendNew(q.Backgrounds, name)
			} else {
				q.Colors = appendNew(q.Colors, name)
			}
			continue
		}
		if !quoted && isWordText(w) { // a quoted text overrides text words
			q.Texts = appendNew(q.Texts, w)
		}
	}
	return q
}

// isBackground reports whether the colour word words[k] names the background: it follows "on"
// (perhaps with an article between) or precedes "background".
func isBackground(words []string, k int) bool {
	switch {
	case k+1 < len(words) && words[k+1] == "background":
		return true
	case k >= 1 && words[k-1] == "on":
		return true
	case k >= 2 && articles[words[k-1]] && words[k-2] == "on":
		return true
	}
	return false
}

// isWordText reports whether an unquoted word names an image text: a word of two or more
// letters among the texts, or a single digit. Single letters count only when quoted, so the
// article "a" is not the letter A.
func isWordText(w string) bool {
	if len(w) == 1 {
		return w[0] >= '0' && w[0] <= '9'
	}
	return slices.Contains(texts, w) // the multi-letter texts are lower case
}

// canonicalText returns the image text equal to text ignoring case ("a" -> "A"), or text itself
// if no image has it.
func canonicalText(text string) string {
	if i := slices.IndexFunc(texts, func(t string) bool { return strings.EqualFold(t, text) }); i >= 0 {
		return texts[i]
	}
	return text
}

// appendNew appends v to list unless it is already there.
func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

// Matches reports whether an image with tags it satisfies the query.
func (q Query) Matches(it Item) bool {
	if len(q.Texts) > 0 && !slices.ContainsFunc(q.Texts, func(t string) bool { return strings.EqualFold(t, it.Text) }) {
		return false
	}
	if len(q.Colors) > 0 && !slices.Contains(q.Colors, it.Color) {
		return false
	}
	if len(q.Backgrounds) > 0 && !slices.Contains(q.Backgrounds, it.Background) {
		return false
	}
	return true
}

// Match selects the images a prompt asks for, by the rule in the package documentation. If the
// prompt constrains nothing, or no image satisfies it, every image is selected and Matched is
// false.
func (d *Dataset) Match(prompt string) Selection {
	s := Selection{Query: ParsePrompt(prompt), Mask: make([]bool, d.Len())}
	if !s.Query.Empty() {
		for i, it := range d.items {
			if s.Query.Matches(it) {
				s.Mask[i] = true
				s.N++
			}
		}
	}
	if s.N == 0 {
		for i := range s.Mask {
			s.Mask[i] = true
		}
		s.N = len(s.Mask)
		return s
	}
	s.Matched = true
	return s
}

// LogPrior returns the prior log-weights the prompt gives the images: Match(prompt).LogPrior().
func (d *Dataset) LogPrior(prompt string) []float32 { return d.Match(prompt).LogPrior() }
