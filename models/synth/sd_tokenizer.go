package synth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// A small CLIP-format BPE vocabulary. CLIP's own (49408 tokens) cannot be copied into the
// repository, so the tokenizer folders carry one built the way CLIP builds its own
// (simple_tokenizer.py): the 256 symbols of GPT-2's byte alphabet, the same 256 with the
// end-of-word suffix </w>, one token per merge in merge order, and the start and end of text as
// the two last (largest) ids. The merges are a few dozen common English pairs, so a prompt such
// as "a photo of a cat" encodes to whole-word tokens while any other text still encodes, byte by
// byte.

const (
	sdBOS       = "<|startoftext|>"
	sdMaxLength = 77 // model_max_length, and the text encoders' max_position_embeddings
	endOfWord   = "</w>"
)

// sdMerges are the merges, best first; each pair's parts are byte symbols or earlier merges.
var sdMerges = []string{
	"t h", "i n", "a n", "e r", "o n", "r e", "th e</w>", "o f</w>", "a t</w>", "c at</w>",
	"p h", "o t", "ph ot", "phot o</w>", "in g</w>", "an d</w>", "e n", "o r", "e s</w>", "i s</w>",
	"o g</w>", "d og</w>", "a r", "s t", "e d</w>", "t o</w>", "i t</w>", "o w", "l e</w>", "a l",
	"a in", "p ain", "pain t", "paint ing</w>", "s e</w>", "o u", "h ou", "hou se</w>", "re d</w>",
	"b l", "bl u", "blu e</w>", "t re", "tre e</w>", "o n</w>", "i n</w>", "t h</w>", "w i", "wi th</w>",
	"r a", "p or", "por t", "port ra", "portra it</w>",
}

// sdVocab is the generated vocabulary.
type sdVocab struct {
	tokens []string       // by id
	vocab  map[string]int // token -> id
	merges [][2]string
}

// gpt2Bytes is GPT-2's bytes_to_unicode in CLIP's order: the printable Latin-1 bytes stand for
// themselves, in byte order, then the other 68 bytes, in byte order, for U+0100 onwards.
func gpt2Bytes() []string {
	var printable, other []string
	n := rune(0)
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			printable = append(printable, string(rune(b)))
		} else {
			other = append(other, string(256+n))
			n++
		}
	}
	return append(printable, other...)
}

// sdTokenizer builds the vocabulary. It panics if sdMerges is inconsistent, which the tests
// would catch at once.
func sdTokenizer() *sdVocab {
	v := &sdVocab{vocab: map[string]int{}}
	addToken := func(tok string) {
		if _, dup := v.vocab[tok]; dup {
			panic(fmt.Sprintf("synth: token %q twice in the generated vocabulary", tok))
		}
		v.vocab[tok] = len(v.tokens)
		v.tokens = append(v.tokens, tok)
	}
	alphabet := gpt2Bytes()
	for _, s := range alphabet {
		addToken(s)
	}
	for _, s := range alphabet {
		addToken(s + endOfWord)
	}
	for _, m := range sdMerges {
		left, right, ok := strings.Cut(m, " ")
		_, okL := v.vocab[left]
		_, okR := v.vocab[right]
		if !ok || !okL || !okR {
			panic(fmt.Sprintf("synth: merge %q uses a token not defined before it", m))
		}
		v.merges = append(v.merges, [2]string{left, right})
		addToken(left + right)
	}
	addToken(sdBOS)
	addToken(sdEOS)
	return v
}

// jsonString encodes s as a JSON string without HTML escaping.
func jsonString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err) // a string always encodes
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// files returns vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json of
// a tokenizer that pads with pad (SD 1.x: <|endoftext|>; SD 2.x and SDXL's tokenizer_2: "!").
func (v *sdVocab) files(pad string) []sdFile {
	// vocab.json: one line in id order, as CLIP's.
	var vocab strings.Builder
	vocab.WriteByte('{')
	for id, tok := range v.tokens {
		if id > 0 {
			vocab.WriteString(", ")
		}
		fmt.Fprintf(&vocab, "%s: %d", jsonString(tok), id)
	}
	vocab.WriteString("}\n")

	var merges strings.Builder
	merges.WriteString("#version: 0.2\n")
	for _, m := range v.merges {
		merges.WriteString(m[0] + " " + m[1] + "\n")
	}

	added := func(content string) map[string]any {
		return map[string]any{"content": content, "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}
	}
	special := map[string]any{
		"bos_token": added(sdBOS),
		"eos_token": added(sdEOS),
		"unk_token": added(sdEOS),
		"pad_token": pad,
	}
	config := map[string]any{
		"add_prefix_space":             false,
		"bos_token":                    added(sdBOS),
		"clean_up_tokenization_spaces": true,
		"do_lower_case":                true,
		"eos_token":                    added(sdEOS),
		"errors":                       "replace",
		"model_max_length":             sdMaxLength,
		"pad_token":                    pad,
		"tokenizer_class":              "CLIPTokenizer",
		"unk_token":                    added(sdEOS),
	}
	sp, err1 := jsonFile(special)
	cf, err2 := jsonFile(config)
	if err1 != nil || err2 != nil {
		panic(fmt.Sprint(err1, err2)) // maps of strings and bools always encode
	}
	return []sdFile{
		{"vocab.json", []byte(vocab.String())},
		{"merges.txt", []byte(merges.String())},
		{"tokenizer_config.json", cf},
		{"special_tokens_map.json", sp},
	}
}

// emptyPrompt is the padded ids of the empty prompt: BOS, EOS, then pad up to 77.
func (v *sdVocab) emptyPrompt(pad string) []int {
	ids := []int{v.vocab[sdBOS], v.vocab[sdEOS]}
	for len(ids) < sdMaxLength {
		ids = append(ids, v.vocab[pad])
	}
	return ids
}
