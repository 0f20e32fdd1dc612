// Package bert is the WordPiece tokenizer of BERT's uncased models, read from a vocab.txt: the
// tokenizer in front of BLIP's text encoder, and so of ImageReward, which scores prompts as
// bert-base-uncased ids padded to 35 positions. It turns a prompt into the fixed-length ids and
// attention mask a text encoder reads, and back into text for display.
//
// It reproduces transformers' (slow) BertTokenizer, the class BLIP and ImageReward load, id for
// id:
//
//  1. the special tokens [UNK], [SEP], [PAD], [CLS] and [MASK], written exactly so in the text,
//     are cut out first and become their own ids;
//  2. each remaining piece is lowercased one character at a time (so İ becomes "i̇" and Σ is
//     always σ, never the final ς: transformers lowercases with a regular expression that
//     matches one character at a time, before BasicTokenizer lowercases again);
//  3. cleaning: NUL, U+FFFD and control characters (Unicode category C*, unassigned code points
//     included, but not tab, newline and carriage return) are dropped, and white space (space,
//     tab, newline, carriage return and category Zs) becomes a space;
//  4. every CJK ideograph (the CJK Unified Ideographs blocks and extensions A to E, and the
//     compatibility ideographs) gets a space on each side, so that it is a word of its own;
//  5. the text is split on white space, and each word has its accents stripped: NFD, then
//     every non-spacing mark (category Mn) is dropped;
//  6. each word is split around punctuation, one word per punctuation character: ASCII
//     33-47, 58-64, 91-96 and 123-126 (so $, +, <, ^, ` and | count, as in BERT) and every
//     Unicode P* character;
//  7. WordPiece: each word becomes the longest vocabulary entry that starts it, then the
//     longest "##" continuation entry that starts the rest, and so on; a word with a rest no
//     entry starts, or longer than 100 characters, becomes [UNK] whole;
//  8. [CLS] and [SEP] frame the result, which is truncated to the model's maximum length with
//     [SEP] kept last, and padded with [PAD] (id 0) on request; the attention mask is 1 over
//     [CLS] ... [SEP] and 0 over the padding.
//
// Text that is not valid UTF-8 is read with each invalid byte as U+FFFD, which cleaning drops.
// Unicode properties are Go's (unicode, golang.org/x/text/unicode/norm); Python's unicodedata
// may be of another Unicode version, which matters only for characters assigned in between.
//
// Where transformers differs from itself, this package follows the slow BertTokenizer that
// BLIP loads: the fast tokenizer (tokenizer.json) strips accents before lowercasing, which
// gives the same ids for every input we know of. Newer transformers releases also apply NFC
// before splitting on white space; for an uncased vocabulary the NFD of step 5 makes that
// irrelevant. Added tokens beyond the five special ones (BLIP's [DEC] and [ENC]) are not matched
// in the text: ImageReward never puts them in a prompt.
//
// The package does not run the text encoder or encode sentence pairs (no token_type_ids); it
// only reads the vocab.txt, tokenizer_config.json and special_tokens_map.json of a Hugging Face
// tokenizer folder.
package bert

import (
	"fmt"
	"iter"
	"strings"
)

// bert-base-uncased's settings, used where the tokenizer config says nothing.
const (
	// DefaultMaxLength is model_max_length of bert-base-uncased: 512 positions. ImageReward
	// reads 35; use [Tokenizer.WithMaxLength] or Config.MaxLength for it.
	DefaultMaxLength = 512
	// DefaultCLSToken starts every encoding (id 101 in bert-base-uncased).
	DefaultCLSToken = "[CLS]"
	// DefaultSEPToken ends every encoding before the padding (id 102).
	DefaultSEPToken = "[SEP]"
	// DefaultPadToken is the padding (id 0).
	DefaultPadToken = "[PAD]"
	// DefaultUNKToken stands for a word WordPiece cannot split (id 100).
	DefaultUNKToken = "[UNK]"
	// DefaultMaskToken is the masked-language-model token (id 103); it is only matched in text.
	DefaultMaskToken = "[MASK]"
	// MaxWordChars is WordPiece's max_input_chars_per_word: a longer word is [UNK] whole.
	MaxWordChars = 100
)

// Config holds what Hugging Face keeps beside the vocabulary in tokenizer_config.json and
// special_tokens_map.json. The zero Config is bert-base-uncased's: 512 positions, lowercase
// with accents stripped, CJK characters split, [CLS] [SEP] [PAD] [UNK] [MASK].
type Config struct {
	// MaxLength is model_max_length, the number of ids the text encoder reads, [CLS] and [SEP]
	// included. 0 means DefaultMaxLength; otherwise it must be at least 2.
	MaxLength int
	// CLSToken, SEPToken, PadToken, UNKToken and MaskToken are token texts looked up in the
	// vocabulary; "" means the Default of the same name.
	CLSToken, SEPToken, PadToken, UNKToken, MaskToken string
	// KeepCase turns lowercasing off (do_lower_case: false), for cased vocabularies.
	KeepCase bool
	// StripAccents is strip_accents: nil follows lowercasing (BERT's rule: uncased models strip
	// accents, cased ones keep them).
	StripAccents *bool
	// KeepCJKTogether turns off the spaces around CJK ideographs (tokenize_chinese_chars:
	// false).
	KeepCJKTogether bool
}

// Tokenizer encodes prompts for a BERT text encoder. It is immutable once loaded and safe for
// concurrent use by several goroutines.
type Tokenizer struct {
	words   map[string]int // entries that start a word
	pieces  map[string]int // "##" entries, without the "##"
	decoder []string       // id -> token text; "" where no line has the id

	special []special // matched in the raw text, leftmost first

	maxLen             int
	cls, sep, pad, unk int
	lower, strip, cjk  bool
}

// special is a special token: its text, matched verbatim in prompts, and its id.
type special struct {
	text string
	id   int
}

// MaxLength is the number of ids EncodePadded returns (model_max_length).
func (t *Tokenizer) MaxLength() int { return t.maxLen }

// WithMaxLength returns a tokenizer that shares t's vocabulary but encodes to n positions, for
// a text encoder that reads fewer (ImageReward: 35) or more than the folder's
// model_max_length. n must be at least 2, for [CLS] and [SEP].
func (t *Tokenizer) WithMaxLength(n int) (*Tokenizer, error) {
	if n < 2 {
		return nil, fmt.Errorf("bert: max length %d leaves no room for [CLS] and [SEP]", n)
	}
	c := *t
	c.maxLen = n
	return &c, nil
}

// PadID is the id EncodePadded pads with: [PAD], 0 in every BERT vocabulary we know.
func (t *Tokenizer) PadID() int { return t.pad }

// CLS is the id of [CLS], first in every encoding.
func (t *Tokenizer) CLS() int { return t.cls }

// SEP is the id of [SEP], which ends every encoding before the padding.
func (t *Tokenizer) SEP() int { return t.sep }

// UNK is the id of [UNK], which stands for a word WordPiece cannot split.
func (t *Tokenizer) UNK() int { return t.unk }

// VocabSize is the number of lines of vocab.txt: every id Encode returns is in
// [0, VocabSize), and it is the row count of the text encoder's token embedding.
func (t *Tokenizer) VocabSize() int { return len(t.decoder) }

// Encode returns the ids of text framed by [CLS] and [SEP], without padding. When the text has
// more than MaxLength-2 tokens, the excess is dropped and [SEP] is still last (transformers'
// truncation=True), so the result never has more than MaxLength ids.
func (t *Tokenizer) Encode(text string) []int {
	ids, _ := t.encode(text)
	return ids
}

// EncodePadded returns exactly MaxLength ids: Encode's result followed by PadID (transformers'
// padding="max_length"). truncated reports that the text had more tokens than fit, so that
// callers can warn that the end of the prompt is lost.
func (t *Tokenizer) EncodePadded(text string) (ids []int, truncated bool) {
	ids, truncated = t.encode(text)
	for len(ids) < t.maxLen {
		ids = append(ids, t.pad)
	}
	return ids, truncated
}

// EncodeWithMask returns EncodePadded's ids and the attention mask that goes with them: 1 over
// [CLS], the text's tokens and [SEP], 0 over the padding. The mask comes from the encoding's
// length, not from the ids, so a [PAD] written in the text is still attended to, as in
// transformers.
func (t *Tokenizer) EncodeWithMask(text string) (ids, mask []int, truncated bool) {
	ids, truncated = t.encode(text)
	used := len(ids)
	for len(ids) < t.maxLen {
		ids = append(ids, t.pad)
	}
	mask = make([]int, len(ids))
	for i := range used {
		mask[i] = 1
	}
	return ids, mask, truncated
}

// encode frames the content ids of text with [CLS] and [SEP], truncating them to MaxLength-2.
// It stops reading text at the first id that does not fit.
func (t *Tokenizer) encode(text string) (ids []int, truncated bool) {
	limit := t.maxLen - 2
	ids = make([]int, 1, min(t.maxLen, 1024))
	ids[0] = t.cls
	for id := range t.content(text) {
		if len(ids) > limit { // limit content ids already, and one more
			return append(ids, t.sep), true
		}
		ids = append(ids, id)
	}
	return append(ids, t.sep), false
}

// content yields the ids of text, unframed, by the pipeline of the package comment.
func (t *Tokenizer) content(text string) iter.Seq[int] {
	return func(yield func(int) bool) {
		for piece, id := range t.splitSpecial(text) {
			if id >= 0 {
				if !yield(id) {
					return
				}
				continue
			}
			for w := range t.basicWords(piece) {
				for _, id := range t.wordPiece(w) {
					if !yield(id) {
						return
					}
				}
			}
		}
	}
}

// splitSpecial yields the pieces of text around the special tokens, paired with -1, and the
// special tokens' ids, paired with "". At each position the leftmost match wins; no special
// token is a prefix of another, so the order of the list does not matter. Empty pieces are
// skipped. This is transformers' split on its trie of no-split tokens; the white space it
// strips around them is dropped by the basic tokenizer anyway.
func (t *Tokenizer) splitSpecial(text string) iter.Seq2[string, int] {
	return func(yield func(string, int) bool) {
		for text != "" {
			at, which := -1, -1
			for i, s := range t.special {
				if j := strings.Index(text, s.text); j >= 0 && (at < 0 || j < at) {
					at, which = j, i
				}
			}
			if at < 0 {
				break
			}
			if at > 0 && !yield(text[:at], -1) {
				return
			}
			s := t.special[which]
			if !yield("", s.id) {
				return
			}
			text = text[at+len(s.text):]
		}
		if text != "" {
			yield(text, -1)
		}
	}
}

// Decode turns ids back into text: tokens joined by spaces, with each "##" continuation glued
// to the token before it (transformers' convert_tokens_to_string). [CLS] and [SEP] are dropped
// wherever they stand, and so is a trailing run of PadID (the padding); ids outside the
// vocabulary are skipped. Decode(Encode(s)) is s lowercased, without accents, with a space
// around each punctuation character: "Hello, World!" -> "hello , world !".
func (t *Tokenizer) Decode(ids []int) string {
	end := len(ids)
	for end > 0 && ids[end-1] == t.pad {
		end--
	}
	var b strings.Builder
	for _, id := range ids[:end] {
		if id == t.cls || id == t.sep || id < 0 || id >= len(t.decoder) {
			continue
		}
		tok := t.decoder[id]
		if rest, ok := strings.CutPrefix(tok, continuation); ok && b.Len() > 0 {
			b.WriteString(rest)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(tok)
	}
	return b.String()
}
