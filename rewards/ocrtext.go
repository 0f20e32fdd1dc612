package rewards

import (
	"math"
	"strings"
	"unicode/utf8"
)

// QuotedText returns the text between the first pair of double quotes in prompt, the target of
// the OCR reward (Flow-GRPO's prompt.split('"')[1]); ok is false when the prompt has no
// complete pair.
func QuotedText(prompt string) (text string, ok bool) {
	_, rest, found := strings.Cut(prompt, `"`)
	if !found {
		return "", false
	}
	text, _, found = strings.Cut(rest, `"`)
	if !found {
		return "", false
	}
	return text, true
}

// OCRReward is Flow-GRPO's OCR reward of text read in an image against a target: both are
// lowercased and stripped of spaces; the distance is 0 if the target occurs in what was read,
// else their Levenshtein distance (in characters) capped at the target's length; the reward
// is 1 - distance/length, in [0, 1]. An empty target has no defined reward and gives NaN.
func OCRReward(read, target string) float64 {
	r, t := ocrNormalize(read), ocrNormalize(target)
	n := utf8.RuneCountInString(t)
	if n == 0 {
		return math.NaN()
	}
	d := 0
	if !strings.Contains(r, t) {
		d = min(Levenshtein(r, t), n)
	}
	return 1 - float64(d)/float64(n)
}

// ocrNormalize lowercases s and removes its spaces.
func ocrNormalize(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), " ", "")
}

// Levenshtein is the edit distance between a and b: the fewest single-rune insertions, deletions
// and substitutions that turn one into the other. It counts runes, not bytes, so "café" is one
// edit from "cafe", just as Flow-GRPO's Python distance counts code points. It does not
// normalise: OCRReward lowercases and drops spaces first. It keeps two rows of the dynamic
// programme, len(b)+1 ints each.
func Levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1) // prev[j]: distance from ra[:i-1] to rb[:j]
	cur := make([]int, len(rb)+1)  // cur[j]: distance from ra[:i] to rb[:j]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
