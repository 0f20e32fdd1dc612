package clip

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
)

// shared is the real CLIP tokenizer of ../shared/tokenizers/clip, loaded once per binary.
var shared struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

// sharedTokenizer returns the real CLIP tokenizer, or skips when the shared data is absent.
func sharedTokenizer(tb testing.TB) *Tokenizer {
	tb.Helper()
	dir := filepath.Dir(testenv.SharedFile(tb, "tokenizers/clip/vocab.json"))
	shared.once.Do(func() { shared.tok, shared.err = Load(dir) })
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.tok
}

// goldenCase is one line of golden.jsonl.
type goldenCase struct {
	Text string `json:"text"`
	IDs  []int  `json:"ids"`
}

// goldenCases reads ../shared/tokenizers/clip/golden.jsonl, or skips.
func goldenCases(tb testing.TB) []goldenCase {
	tb.Helper()
	f, err := os.Open(testenv.SharedFile(tb, "tokenizers/clip/golden.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var cases []goldenCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c goldenCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			tb.Fatalf("golden.jsonl line %d: %v", len(cases)+1, err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return cases
}

func TestGolden(t *testing.T) {
	tok := sharedTokenizer(t)
	cases := goldenCases(t)
	unlimited := *tok
	unlimited.maxLen = 1 << 20
	for i, c := range cases {
		if got := tok.Encode(c.Text); !slices.Equal(got, c.IDs) {
			t.Errorf("line %d: Encode(%q)\n got  %v\n want %v", i+1, c.Text, got, c.IDs)
		}
		padded, truncated := tok.EncodePadded(c.Text)
		if !slices.Equal(padded[:len(c.IDs)], c.IDs) || len(padded) != 77 {
			t.Errorf("line %d: EncodePadded(%q) = %v, want the golden ids then padding", i+1, c.Text, padded)
		}
		for _, id := range padded[len(c.IDs):] {
			if id != tok.PadID() {
				t.Errorf("line %d: padding has id %d, want %d", i+1, id, tok.PadID())
				break
			}
		}
		if wantTrunc := len(unlimited.Encode(c.Text)) > 77; truncated != wantTrunc {
			t.Errorf("line %d: truncated = %v, want %v", i+1, truncated, wantTrunc)
		}
	}
	t.Logf("%d golden lines reproduced", len(cases))
}

func TestSD1Defaults(t *testing.T) {
	tok := sharedTokenizer(t)
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"MaxLength", tok.MaxLength(), 77},
		{"BOS", tok.BOS(), 49406},
		{"EOS", tok.EOS(), 49407},
		{"PadID", tok.PadID(), 49407},
		{"VocabSize", tok.VocabSize(), 49408},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestEncodePadded(t *testing.T) {
	tok := sharedTokenizer(t)
	words := func(n int) string { return strings.TrimSpace(strings.Repeat("dog ", n)) } // "dog" is one token
	for _, c := range []struct {
		name      string
		text      string
		content   int // ids between BOS and EOS
		truncated bool
	}{
		{"empty", "", 0, false},
		{"short", "a photo of a cat", 5, false},
		{"75 words fill it", words(75), 75, false},
		{"76 words", words(76), 75, true},
		{"100 words", words(100), 75, true},
		{"100 words of text", strings.Repeat("a red fox jumps over the lazy brown dog and ", 10), 75, true},
		{"one long word", strings.Repeat("x", 5000), 75, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ids, truncated := tok.EncodePadded(c.text)
			if len(ids) != 77 {
				t.Fatalf("len = %d, want 77", len(ids))
			}
			if truncated != c.truncated {
				t.Errorf("truncated = %v, want %v", truncated, c.truncated)
			}
			if ids[0] != tok.BOS() {
				t.Errorf("first id %d, want BOS", ids[0])
			}
			if ids[1+c.content] != tok.EOS() {
				t.Errorf("id %d after %d content ids, want EOS: %v", ids[1+c.content], c.content, ids)
			}
			for i, id := range ids[1 : 1+c.content] {
				if id == tok.EOS() {
					t.Errorf("EOS at %d inside the content", i+1)
				}
			}
			for _, id := range ids[2+c.content:] {
				if id != tok.PadID() {
					t.Fatalf("padding %v, want %d", ids[2+c.content:], tok.PadID())
				}
			}
			if enc := tok.Encode(c.text); !slices.Equal(enc, ids[:2+c.content]) {
				t.Errorf("Encode = %v, want EncodePadded's unpadded prefix", enc)
			}
		})
	}
}

func TestSpecialTokensInText(t *testing.T) {
	tok := sharedTokenizer(t)
	for _, c := range []struct {
		text string
		want []int
	}{
		// EOS matches the raw text only, BOS the normalised text (tokenizer.json's flags).
		{"cat<|endoftext|>dog", []int{49406, 2368, 49407, 1929, 49407}},
		{"cat <|startoftext|> dog", []int{49406, 2368, 49406, 1929, 49407}},
		{"cat <|STARTOFTEXT|> dog", []int{49406, 2368, 49406, 1929, 49407}},
		// "<|endoftext|>" is cut out before NFC would fold '>' + U+0338 into '≯'.
		{"<|endoftext|>\u0338", []int{49406, 49407, 136, 372, 49407}}, // U+0338 is bytes cc b8
	} {
		if got := tok.Encode(c.text); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
	if a, b := tok.Encode("cat <|ENDOFTEXT|> dog"), tok.Encode("cat <|endoftext |> dog"); slices.Contains(a[1:len(a)-1], 49407) ||
		slices.Contains(b[1:len(b)-1], 49407) {
		t.Errorf("upper-case or broken EOS text became EOS: %v, %v", a, b)
	}
}

func TestNormalize(t *testing.T) {
	tok := &Tokenizer{lower: true}
	for _, c := range []struct{ in, want string }{
		{"A  B\t\n\vC\u00a0D\u3000E\u2028F", "a b c d e f"},
		{"  x  ", " x "},
		{"cafe\u0301", "caf\u00e9"},
		{"\u0130stanbul", "i\u0307stanbul"},  // Rust's to_lowercase, not Go's simple mapping
		{"ΣΊΣΥΦΟΣ", "σίσυφοσ"},               // no final-sigma rule
		{"\u212b", "\u00e5"},                 // Angstrom sign: NFC then lowercase
		{"\ufeffa\u200bb", "\ufeffa\u200bb"}, // not White_Space
	} {
		if got := tok.normalize(c.in); got != c.want {
			t.Errorf("normalize(%+q) = %+q, want %+q", c.in, got, c.want)
		}
	}
}

// TestWordsMatchesRegexp checks the hand-written pre-tokenizer against CLIP's pattern run by
// Go's regexp (leftmost-first, like Oniguruma), with \s spelled out as Unicode White_Space.
func TestWordsMatchesRegexp(t *testing.T) {
	const ws = `\t-\r\x{85}\p{Z}`
	re := regexp.MustCompile(`'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^` + ws + `\p{L}\p{N}]+`)
	texts := []string{
		"it's a dog's life, isn't it?", "what?'s", "''s '' 'x 'll've", "rock'n'roll",
		"2024 ³½ Ⅻ ٣", "a\u0301b \u0301\u0302 c", "東京タワー の夜景", "\x00\x01 \x7f", "\u00a0\u2003x\u3000y",
		"e-mail: user@example.com #tag $100 50%!!! ...", "\ufffd\ufeff\u200d👍🏽 🇫🇷",
	}
	if f, err := os.Open(filepath.Join(testenv.SharedDir(), "tokenizers/clip/golden.jsonl")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var c goldenCase
			if json.Unmarshal(sc.Bytes(), &c) == nil {
				texts = append(texts, strings.ToLower(c.Text))
			}
		}
		f.Close()
	}
	for _, text := range texts {
		got := slices.Collect(words(text))
		want := re.FindAllString(text, -1)
		if !slices.Equal(got, want) {
			t.Errorf("words(%q)\n got  %q\n want %q", text, got, want)
		}
	}
}

func TestDecode(t *testing.T) {
	tok := sharedTokenizer(t)
	for _, c := range []struct{ in, want string }{
		{"A photo of an astronaut riding a horse on mars", "a photo of an astronaut riding a horse on mars"},
		{"Hello, world!", "hello , world !"},
		{"Ελληνικά γράμματα", "ελληνικά γράμματα"},
		{"東京タワーの夜景", "東京タワーの夜景"},
		{"a cat <|endoftext|> a dog", "a cat a dog"},
		{"", ""},
	} {
		ids, _ := tok.EncodePadded(c.in)
		if got := tok.Decode(ids); got != c.want {
			t.Errorf("Decode(EncodePadded(%q)) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := tok.Decode([]int{-1, 320, 1 << 30, 2368}); got != "a cat" {
		t.Errorf("Decode with ids outside the vocabulary = %q, want %q", got, "a cat")
	}
	if got := tok.Decode([]int{138}); got != "\ufffd" { // half of a two-byte character
		t.Errorf("Decode of a lone lead byte = %+q, want U+FFFD", got)
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := sharedTokenizer(t)
	var cases []goldenCase
	if _, err := os.Stat(filepath.Join(testenv.SharedDir(), "tokenizers/clip/golden.jsonl")); err == nil {
		cases = goldenCases(t)
	}
	// Words unseen so far, so that the goroutines race to fill the cache.
	for i := range 200 {
		text := strings.Repeat(string(rune('a'+i%26)), 1+i%13) + "zq" + strings.Repeat("xy", i%7)
		cases = append(cases, goldenCase{Text: text})
	}
	for i := range cases {
		if cases[i].IDs == nil {
			cases[i].IDs = func() []int { // reference from an empty cache, before the race
				ref := *tok
				ref.cache = newWordCache()
				return ref.Encode(cases[i].Text)
			}()
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 20 {
				c := cases[(g*7+r*13)%len(cases)]
				for _, c := range []goldenCase{c, cases[(g+r)%len(cases)]} {
					if got := tok.Encode(c.Text); !slices.Equal(got, c.IDs) {
						t.Errorf("goroutine %d: Encode(%q) = %v, want %v", g, c.Text, got, c.IDs)
					}
					if ids, _ := tok.EncodePadded(c.Text); len(ids) != 77 {
						t.Errorf("goroutine %d: %d ids", g, len(ids))
					}
				}
			}
		}()
	}
	wg.Wait()
}
