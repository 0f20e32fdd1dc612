package bert

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
)

// oddTexts are seeds beyond the golden prompts and the committed corpus in
// testdata/fuzz/FuzzEncodePadded: control characters, invalid UTF-8, lone combining marks,
// special-token look-alikes, CJK, punctuation runs and words past WordPiece's limit.
var oddTexts = []string{
	"\x00", "\x00\x01\x02\x7f\x80\xff", "\xff\xfe invalid utf-8 \xc3", "\ufeff\u200b\u200d\u2060",
	"\u0301", "e\u0301\u0327\u0323", "\u1100\u1161\u11a8", "\u0130\u03a3\u1e9e\u212b",
	"👩🏽‍🚀 🇯🇵 🏳️‍🌈", "ℌ𝔢𝔩𝔩𝔬 ｆｕｌｌｗｉｄｔｈ", "٣٤ ₂ ½ Ⅻ", "\t\n\v\f\r\u0085\u00a0\u2028\u3000",
	"[CLS][SEP][PAD][UNK][MASK]", "[[SEP]]", "[sep] [SEP", "中文和日本語のテキスト", "\U00020000\uf900",
	strings.Repeat("a", MaxWordChars+1), strings.Repeat("\u0301", 100), strings.Repeat("ab!", 200),
	strings.Repeat("dog ", 100), "##s ## #",
}

func FuzzEncodePadded(f *testing.F) {
	for _, s := range oddTexts {
		f.Add(s)
	}
	// Without the shared vocabulary the target still runs, on the toy one.
	tok := toyTokenizer(f, Config{MaxLength: imageRewardLength})
	if _, err := os.Stat(filepath.Join(testenv.SharedDir(), sharedRel, "golden.jsonl")); err == nil {
		for _, c := range goldenCases(f) {
			f.Add(c.Text)
		}
		tok = sharedTokenizer(f)
	}
	unlimited, err := tok.WithMaxLength(1 << 30)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ids, mask, truncated := tok.EncodeWithMask(text)
		if len(ids) != tok.MaxLength() || len(mask) != tok.MaxLength() {
			t.Fatalf("%d ids and %d mask values, want %d", len(ids), len(mask), tok.MaxLength())
		}
		if ids[0] != tok.CLS() {
			t.Fatalf("first id %d, want [CLS]", ids[0])
		}
		for i, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("id %d at %d outside [0, %d)", id, i, tok.VocabSize())
			}
		}
		enc := tok.Encode(text)
		if len(enc) < 2 || len(enc) > tok.MaxLength() || enc[len(enc)-1] != tok.SEP() {
			t.Fatalf("Encode = %v: want [CLS] ... [SEP], at most %d ids", enc, tok.MaxLength())
		}
		for i := range ids {
			if i < len(enc) && (ids[i] != enc[i] || mask[i] != 1) || i >= len(enc) && (ids[i] != tok.PadID() || mask[i] != 0) {
				t.Fatalf("EncodeWithMask = %v, %v; want Encode = %v, then padding with mask 0", ids, mask, enc)
			}
		}
		if full := unlimited.Encode(text); truncated != (len(full) > tok.MaxLength()) {
			t.Fatalf("truncated = %v for %d ids", truncated, len(full))
		}
		_ = tok.Decode(ids)
	})
}

// typicalPrompt is a realistic prompt of about 35 tokens.
const typicalPrompt = "a photorealistic portrait of an elderly fisherman with a weathered face, " +
	"wearing a yellow raincoat, standing on a wooden pier at dawn, dramatic lighting, 85mm, bokeh"

func BenchmarkEncode(b *testing.B) {
	tok := sharedTokenizer(b)
	b.ReportAllocs()
	for b.Loop() {
		tok.EncodeWithMask(typicalPrompt)
	}
}

func BenchmarkLoad(b *testing.B) {
	dir := filepath.Dir(testenv.SharedFile(b, sharedRel+"/"+VocabFile))
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}
