package rewards

import (
	"math"
	"strings"
	"unicode/utf8"

	"github.com/fksteer/fksteer/internal/keys"
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
		d = min(keys.Levenshtein(r, t), n)
	}
	return 1 - float64(d)/float64(n)
}

// ocrNormalize lowercases s and removes its spaces.
func ocrNormalize(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), " ", "")
}
