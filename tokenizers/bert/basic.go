package bert

import (
	"iter"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// basicWords yields the words of one piece of text (no special tokens in it) by BERT's basic
// tokenizer: steps 2 to 6 of the package comment. Every word is non-empty and free of white
// space; a punctuation character is always a word of its own.
func (t *Tokenizer) basicWords(piece string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for tok := range strings.FieldsSeq(t.clean(piece)) {
			if t.strip {
				tok = stripAccents(tok)
			}
			for w := range splitPunct(tok) {
				if !yield(w) {
					return
				}
			}
		}
	}
}

// clean does steps 2 to 4 in one pass: lowercase, drop what _clean_text drops, turn white space
// into spaces and put spaces around CJK ideographs. The order of the three does not matter,
// as lowercasing maps letters to letters only.
func (t *Tokenizer) clean(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s { // an invalid byte reads as U+FFFD, which is dropped below
		switch {
		case r == 0 || r == utf8.RuneError || isControl(r):
		case isWhitespace(r):
			b.WriteByte(' ')
		case t.cjk && isCJK(r):
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		case !t.lower:
			b.WriteRune(r)
		case r == '\u0130':
			// Python's str.lower uses the full case mapping, whose one unconditional
			// many-rune lowercase is İ -> i + combining dot above.
			b.WriteString("i\u0307")
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// isWhitespace is transformers' _is_whitespace: space, tab, newline, carriage return and the
// space separators (Zs).
func isWhitespace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r)
}

// isControl is transformers' _is_control: any character whose Unicode category starts with
// C, except tab, newline and carriage return. Python reports unassigned code points as Cn, a
// category Go has no table for, so they count when no other category holds them.
func isControl(r rune) bool {
	if r < utf8.RuneSelf {
		return (r < 0x20 || r == 0x7f) && r != '\t' && r != '\n' && r != '\r'
	}
	return unicode.In(r, unicode.C) || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// isPunct is transformers' _is_punctuation: every non-letter, non-digit printable ASCII
// character (so $, +, <, =, >, ^, ` and | count, though Unicode files them as symbols) and
// every character of a Unicode P* category.
func isPunct(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 33 && r <= 47 || r >= 58 && r <= 64 || r >= 91 && r <= 96 || r >= 123 && r <= 126
	}
	return unicode.IsPunct(r)
}

// isCJK is transformers' _is_chinese_char: the CJK Unified Ideographs block, its extensions A
// to E and the two compatibility ideograph blocks. Hiragana, katakana and hangul are not in
// it: those scripts separate words with spaces.
func isCJK(r rune) bool {
	return r >= 0x4E00 && r <= 0x9FFF ||
		r >= 0x3400 && r <= 0x4DBF ||
		r >= 0x20000 && r <= 0x2A6DF ||
		r >= 0x2A700 && r <= 0x2B73F ||
		r >= 0x2B740 && r <= 0x2B81F ||
		r >= 0x2B820 && r <= 0x2CEAF ||
		r >= 0xF900 && r <= 0xFAFF ||
		r >= 0x2F800 && r <= 0x2FA1F
}

// stripAccents is transformers' _run_strip_accents: NFD, then drop the non-spacing marks
// (Mn). The result may be empty (a word of lone combining marks), which the caller skips.
func stripAccents(s string) string {
	ascii := true
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii { // nothing to decompose
		return s
	}
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if !unicode.Is(unicode.Mn, r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// splitPunct yields the runs of s between punctuation characters and each punctuation
// character alone, in order (transformers' _run_split_on_punc); empty runs are skipped.
func splitPunct(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		start := 0
		for i, r := range s {
			if !isPunct(r) {
				continue
			}
			if i > start && !yield(s[start:i]) {
				return
			}
			end := i + utf8.RuneLen(r)
			if !yield(s[i:end]) {
				return
			}
			start = end
		}
		if start < len(s) {
			yield(s[start:])
		}
	}
}
