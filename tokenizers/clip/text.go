package clip

import (
	"iter"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// splitOn yields the pieces of s around each occurrence of tok, in order, paired with false,
// and the occurrences themselves paired with true; empty pieces are skipped. An empty tok yields s whole. This is
// Hugging Face's added-token split for a single token (leftmost match, no lstrip/rstrip).
func splitOn(s, tok string) iter.Seq2[string, bool] {
	return func(yield func(string, bool) bool) {
		for tok != "" {
			i := strings.Index(s, tok)
			if i < 0 {
				break
			}
			if i > 0 && !yield(s[:i], false) {
				return
			}
			if !yield(tok, true) {
				return
			}
			s = s[i+len(tok):]
		}
		if s != "" {
			yield(s, false)
		}
	}
}

// normalize applies CLIP's normalizer in tokenizer.json order: NFC, every run of white space
// (Unicode White_Space, the \s of Hugging Face's Oniguruma regex) to one space, lowercase.
// Lowercasing follows Rust's char::to_lowercase, which Hugging Face uses: Go's simple case
// mapping plus the one unconditional special case, U+0130 İ -> "i̇" (i + U+0307); no
// final-sigma rule. Leading and trailing spaces are kept: the pre-tokenizer drops them.
func (t *Tokenizer) normalize(s string) string {
	s = norm.NFC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	inSpace := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			if !inSpace {
				b.WriteByte(' ')
			}
			inSpace = true
			continue
		}
		inSpace = false
		switch {
		case !t.lower:
			b.WriteRune(r)
		case r == '\u0130':
			b.WriteString("i\u0307")
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// words yields the words of normalised text by CLIP's pre-tokenizer pattern
//
//	's|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// tried, like the regex, in that order at each position, leftmost first; white space between
// matches is dropped. Hugging Face then runs GPT-2's ByteLevel split over each word, which
// never splits these words further, so it is left out.
func words(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			end := i + size
			switch {
			case r == '\'' && contraction(s[end:]) > 0:
				end += contraction(s[end:])
			case unicode.IsLetter(r):
				end = spanWhile(s, end, unicode.IsLetter)
			case unicode.IsNumber(r):
				// one digit per word: "2024" is four words
			case unicode.IsSpace(r):
				i = end
				continue
			default:
				end = spanWhile(s, end, isOther)
			}
			if !yield(s[i:end]) {
				return
			}
			i = end
		}
	}
}

// contraction returns the length of the contraction suffix (after the apostrophe) that rest
// starts with, or 0.
func contraction(rest string) int {
	for _, c := range [...]string{"s", "t", "re", "ve", "m", "ll", "d"} {
		if strings.HasPrefix(rest, c) {
			return len(c)
		}
	}
	return 0
}

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool {
	return !unicode.IsSpace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r)
}

// spanWhile returns the end of the run of runes of s from byte i on that satisfy ok.
func spanWhile(s string, i int, ok func(rune) bool) int {
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !ok(r) {
			break
		}
		i += size
	}
	return i
}
