package clip

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
)

// oddTexts are seeds beyond the golden prompts: control characters, invalid UTF-8, lone
// combining marks, special-token look-alikes, very long words and runs of marks.
var oddTexts = []string{
	"\x00", "\x00\x01\x02\x7f\x80\xff", "\xff\xfe invalid utf-8 \xc3", "\ufeff\u200b\u200d\u2060",
	"\u0301", "e\u0301\u0327\u0323", "\u1100\u1161\u11a8", "\u0130\u03a3\u1e9e\u212b",
	"👩🏽‍🚀 🇯🇵 🏳️‍🌈", "ℌ𝔢𝔩𝔩𝔬 ｆｕｌｌｗｉｄｔｈ", "٣٤ ₂ ½ Ⅻ", "\t\n\v\f\r\u0085\u00a0\u2028\u3000",
	"<|startoftext|><|endoftext|><|endoftext|>", "<|endoftext|\u0338", "<|STARTOFTEXT|>",
	"'s's'S 're've'm'll'd ''", strings.Repeat("a", 300), strings.Repeat("\u0301", 100),
	strings.Repeat("ab!", 200), strings.Repeat("dog ", 100),
}

func FuzzEncodePadded(f *testing.F) {
	for _, s := range oddTexts {
		f.Add(s)
	}
	if p := filepath.Join(testenv.SharedDir(), "tokenizers/clip/golden.jsonl"); fileExists(p) {
		for _, c := range goldenCases(f) {
			f.Add(c.Text)
		}
	}
	tok := sharedTokenizer(f)
	f.Fuzz(func(t *testing.T, text string) {
		ids, truncated := tok.EncodePadded(text)
		if len(ids) != tok.MaxLength() {
			t.Fatalf("%d ids, want %d", len(ids), tok.MaxLength())
		}
		if ids[0] != tok.BOS() {
			t.Fatalf("first id %d, want BOS", ids[0])
		}
		for i, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("id %d at %d outside [0, %d)", id, i, tok.VocabSize())
			}
		}
		enc := tok.Encode(text)
		if len(enc) < 2 || len(enc) > tok.MaxLength() || enc[len(enc)-1] != tok.EOS() {
			t.Fatalf("Encode = %v: want BOS ... EOS, at most %d ids", enc, tok.MaxLength())
		}
		for i, id := range enc {
			if ids[i] != id {
				t.Fatalf("EncodePadded = %v, does not start with Encode = %v", ids, enc)
			}
		}
		if truncated == fits(tok, text) {
			t.Fatalf("truncated = %v for %d ids", truncated, len(enc))
		}
		_ = tok.Decode(ids)
	})
}

// fits reports that text's tokens fit in tok's MaxLength, by encoding with no limit.
func fits(tok *Tokenizer, text string) bool {
	unlimited := *tok
	unlimited.maxLen = 1 << 30
	return len(unlimited.Encode(text)) <= tok.MaxLength()
}

// typicalPrompt is a realistic SD prompt of 40-odd tokens.
const typicalPrompt = "a photorealistic portrait of an elderly fisherman with a weathered face, " +
	"wearing a yellow raincoat, standing on a wooden pier at dawn, dramatic lighting, 85mm, bokeh"

// BenchmarkEncode encodes a typical prompt with the word cache warm, as in a long-running
// process that sees similar prompts.
func BenchmarkEncode(b *testing.B) {
	tok := sharedTokenizer(b)
	tok.Encode(typicalPrompt)
	b.ReportAllocs()
	for b.Loop() {
		tok.EncodePadded(typicalPrompt)
	}
}

// BenchmarkEncodeCold encodes it with an empty word cache each time, so every word runs BPE.
func BenchmarkEncodeCold(b *testing.B) {
	tok := *sharedTokenizer(b)
	b.ReportAllocs()
	for b.Loop() {
		tok.cache = newWordCache()
		tok.EncodePadded(typicalPrompt)
	}
}

func BenchmarkLoad(b *testing.B) {
	dir := filepath.Dir(testenv.SharedFile(b, "tokenizers/clip/vocab.json"))
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}
