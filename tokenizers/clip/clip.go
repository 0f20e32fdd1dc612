// Package clip is the byte-level BPE tokenizer of CLIP, the tokenizer in front of Stable
// Diffusion's text encoders (SD 1.x and 2.x, both encoders of SDXL). It turns a prompt into the
// fixed-length id sequence a text encoder reads, and back into text for display.
//
// It reproduces Hugging Face's CLIPTokenizerFast (the tokenizer.json shipped with SD models)
// id for id:
//
//  1. the literal text <|endoftext|> is cut out as the EOS token before anything else;
//  2. each remaining piece is normalised: NFC, every run of white space becomes one space,
//     lowercase (unless the tokenizer config says do_lower_case: false);
//  3. the literal text <|startoftext|> in the normalised text becomes the BOS token;
//  4. the rest is split into words by CLIP's pattern
//     's|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ (white space is dropped);
//  5. each word's UTF-8 bytes are mapped to GPT-2's printable byte alphabet, the last symbol
//     gets the end-of-word suffix </w>, and the merges of merges.txt are applied by rank;
//  6. BOS and EOS frame the result, which is truncated to the model's maximum length with
//     EOS kept last, and padded with the pad token on request.
//
// Where transformers' slow CLIPTokenizer (the class diffusers names) differs, this package
// follows tokenizer.json and so OpenAI's and open_clip's tokenizers on ordinary prompts: control
// characters are kept as byte tokens rather than dropped, CJK ideographs are not split one per
// word, no ftfy or HTML unescaping is done, and a pad token such as SDXL's "!" is never matched
// in the prompt. Lowercasing is Rust's (as in Hugging Face's tokenizers): İ becomes "i̇" and Σ
// never becomes final ς. NFC is golang.org/x/text/unicode/norm's.
//
// The package does not run the text encoder, weight prompts or split long prompts into
// chunks; it only reads the vocabulary and merge files of a diffusers/optimum tokenizer/
// folder.
package clip

import (
	"fmt"
	"iter"
	"strings"
	"unicode/utf8"
)

// Stable Diffusion 1.x settings, used where the tokenizer config says nothing.
const (
	// DefaultMaxLength is model_max_length of every CLIP text encoder in SD: 77 positions.
	DefaultMaxLength = 77
	// DefaultBOSToken is the text of the start-of-text token (id 49406 in CLIP's vocabulary).
	DefaultBOSToken = "<|startoftext|>"
	// DefaultEOSToken is the text of the end-of-text token (id 49407 in CLIP's vocabulary).
	DefaultEOSToken = "<|endoftext|>"
	// DefaultPadToken is SD 1.x's pad token; SD 2.x and SDXL's second tokenizer pad with "!".
	DefaultPadToken = DefaultEOSToken
)

// Config holds what Hugging Face keeps beside the vocabulary in tokenizer_config.json and
// special_tokens_map.json. The zero Config is Stable Diffusion 1.x's: 77 tokens, lowercase,
// BOS <|startoftext|>, EOS and pad <|endoftext|>.
type Config struct {
	// MaxLength is model_max_length, the number of ids the text encoder reads, BOS and EOS
	// included. 0 means DefaultMaxLength; otherwise it must be at least 2.
	MaxLength int
	// BOSToken, EOSToken and PadToken are token texts looked up in the vocabulary;
	// "" means the Default of the same name.
	BOSToken, EOSToken, PadToken string
	// KeepCase turns lowercasing off (do_lower_case: false). CLIP's vocabulary holds no
	// upper-case letters, so this is only for tokenizers trained that way.
	KeepCase bool
}

// Tokenizer encodes prompts for a CLIP text encoder. It is immutable once loaded, apart from
// an internal word cache, and is safe for concurrent use by several goroutines.
type Tokenizer struct {
	decoder []string // id -> token text (in the byte alphabet); "" where no token has the id
	merges  map[uint64]merge
	// byteID[b] and byteEndID[b] are the ids of byte b's symbol alone and with </w>.
	byteID, byteEndID [256]int

	maxLen        int
	bos, eos, pad int
	eosText       string // matched in the raw text
	bosNorm       string // matched in the normalised text
	lower         bool

	cache *wordCache
}

// MaxLength is the number of ids EncodePadded returns (model_max_length).
func (t *Tokenizer) MaxLength() int { return t.maxLen }

// WithMaxLength returns a tokenizer that shares t's vocabulary, merges and word cache but
// encodes to n positions, for a text encoder that reads another length than the folder's
// model_max_length. n must be at least 2, for BOS and EOS.
func (t *Tokenizer) WithMaxLength(n int) (*Tokenizer, error) {
	if n < 2 {
		return nil, fmt.Errorf("clip: max length %d leaves no room for BOS and EOS", n)
	}
	c := *t
	c.maxLen = n
	return &c, nil
}

// PadID is the id EncodePadded pads with: EOS for SD 1.x, "!" (0) for SD 2.x and SDXL's
// second tokenizer.
func (t *Tokenizer) PadID() int { return t.pad }

// BOS is the id of the start-of-text token, first in every encoding.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS is the id of the end-of-text token, which ends every encoding before the padding.
func (t *Tokenizer) EOS() int { return t.eos }

// VocabSize is one more than the largest id in the vocabulary: every id Encode returns is
// in [0, VocabSize), and it is the row count of the text encoder's token embedding.
func (t *Tokenizer) VocabSize() int { return len(t.decoder) }

// Encode returns the ids of text framed by BOS and EOS, without padding. When the text has
// more than MaxLength-2 tokens, the excess is dropped and EOS is still last, so the result
// never has more than MaxLength ids. Text that is not valid UTF-8 is read with each invalid
// run replaced by U+FFFD.
func (t *Tokenizer) Encode(text string) []int {
	ids, _ := t.encode(text)
	return ids
}

// EncodePadded returns exactly MaxLength ids: Encode's result followed by PadID.
// truncated reports that the text had more tokens than fit, so that callers can warn that
// the end of the prompt is lost.
func (t *Tokenizer) EncodePadded(text string) (ids []int, truncated bool) {
	ids, truncated = t.encode(text)
	for len(ids) < t.maxLen {
		ids = append(ids, t.pad)
	}
	return ids, truncated
}

// encode frames the content ids of text with BOS and EOS, truncating them to MaxLength-2.
// It stops reading text at the first id that does not fit.
func (t *Tokenizer) encode(text string) (ids []int, truncated bool) {
	limit := t.maxLen - 2
	ids = make([]int, 1, min(t.maxLen, 1024))
	ids[0] = t.bos
	for id := range t.content(text) {
		if len(ids) > limit { // limit content ids already, and one more
			return append(ids, t.eos), true
		}
		ids = append(ids, id)
	}
	return append(ids, t.eos), false
}

// content yields the ids of text, unframed, by the pipeline of the package comment.
func (t *Tokenizer) content(text string) iter.Seq[int] {
	return func(yield func(int) bool) {
		if !utf8.ValidString(text) {
			text = strings.ToValidUTF8(text, "\uFFFD")
		}
		for raw, isEOS := range splitOn(text, t.eosText) {
			if isEOS {
				if !yield(t.eos) {
					return
				}
				continue
			}
			for piece, isBOS := range splitOn(t.normalize(raw), t.bosNorm) {
				if isBOS {
					if !yield(t.bos) {
						return
					}
					continue
				}
				for w := range words(piece) {
					for _, id := range t.wordIDs(w) {
						if !yield(id) {
							return
						}
					}
				}
			}
		}
	}
}

// Decode turns ids back into text: the </w> suffix becomes a space, BOS and EOS are dropped
// wherever they stand, and so is a trailing run of PadID (the padding of EncodePadded; a pad
// such as "!" inside the text is kept). Ids outside the vocabulary are skipped, and byte
// sequences that are not valid UTF-8 become U+FFFD. Decode(Encode(s)) is s normalised, with
// the spacing of its words as the tokenizer split them ("hello, world" -> "hello , world").
func (t *Tokenizer) Decode(ids []int) string {
	end := len(ids)
	for end > 0 && ids[end-1] == t.pad {
		end--
	}
	var b []byte
	for _, id := range ids[:end] {
		if id == t.bos || id == t.eos || id < 0 || id >= len(t.decoder) {
			continue
		}
		tok, eow := strings.CutSuffix(t.decoder[id], endOfWord)
		for _, r := range tok {
			if c, ok := unicodeToByte(r); ok {
				b = append(b, c)
			} else {
				b = utf8.AppendRune(b, r)
			}
		}
		if eow {
			b = append(b, ' ')
		}
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
}
