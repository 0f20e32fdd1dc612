package bert

import "unicode/utf8"

// continuation prefixes the vocabulary entries that continue a word ("##ing").
const continuation = "##"

// wordPiece returns the ids of one basic-tokenised word by greedy longest-match-first
// WordPiece (transformers' WordpieceTokenizer): the longest entry that starts the word, then
// the longest "##" entry that starts the rest, until the word is used up. A word longer than
// MaxWordChars characters, or with a rest that no entry starts, is [UNK] whole: its pieces
// found so far are discarded.
func (t *Tokenizer) wordPiece(word string) []int {
	if utf8.RuneCountInString(word) > MaxWordChars {
		return []int{t.unk}
	}
	// Most words are one entry: skip the slice for the loop's common first hit.
	if id, ok := t.words[word]; ok {
		return []int{id}
	}
	var ids []int
	for start := 0; start < len(word); {
		table := t.pieces
		if start == 0 {
			table = t.words
		}
		id, end := -1, len(word)
		for end > start {
			if v, ok := table[word[start:end]]; ok {
				id = v
				break
			}
			_, size := utf8.DecodeLastRuneInString(word[start:end])
			end -= size
		}
		if id < 0 {
			return []int{t.unk}
		}
		ids = append(ids, id)
		start = end
	}
	return ids
}
