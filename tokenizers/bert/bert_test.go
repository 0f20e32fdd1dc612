package bert

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
)

// sharedRel is where the real bert-base-uncased files lie under the shared folder.
const sharedRel = "tokenizers/bert-base-uncased"

// imageRewardLength is the text length ImageReward pads and truncates to; the golden ids use it.
const imageRewardLength = 35

// shared is the real bert-base-uncased tokenizer of ../shared, loaded once per binary.
var shared struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

// sharedTokenizer returns the real tokenizer at ImageReward's length, or skips when the shared
// data is absent.
func sharedTokenizer(tb testing.TB) *Tokenizer {
	tb.Helper()
	dir := filepath.Dir(testenv.SharedFile(tb, sharedRel+"/"+VocabFile))
	shared.once.Do(func() {
		tok, err := Load(dir)
		if err == nil {
			tok, err = tok.WithMaxLength(imageRewardLength)
		}
		shared.tok, shared.err = tok, err
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.tok
}

// goldenCase is one line of golden.jsonl: a prompt and its ids, padded to 35.
type goldenCase struct {
	Text string `json:"text"`
	IDs  []int  `json:"ids"`
}

// goldenCases reads ../shared/tokenizers/bert-base-uncased/golden.jsonl, or skips.
func goldenCases(tb testing.TB) []goldenCase {
	tb.Helper()
	f, err := os.Open(testenv.SharedFile(tb, sharedRel+"/golden.jsonl"))
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
	unlimited, err := tok.WithMaxLength(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	matched := 0
	for i, c := range cases {
		ids, mask, truncated := tok.EncodeWithMask(c.Text)
		if !slices.Equal(ids, c.IDs) {
			t.Errorf("line %d: EncodeWithMask(%q)\n got  %v\n want %v", i+1, c.Text, ids, c.IDs)
			continue
		}
		matched++
		used := slices.Index(c.IDs, tok.SEP()) + 1
		for j, m := range mask {
			if want := b2i(j < used); m != want {
				t.Errorf("line %d: mask %v, want 1 over the first %d ids", i+1, mask, used)
				break
			}
		}
		if enc := tok.Encode(c.Text); !slices.Equal(enc, c.IDs[:used]) {
			t.Errorf("line %d: Encode = %v, want the golden ids up to [SEP]", i+1, enc)
		}
		if padded, tr := tok.EncodePadded(c.Text); !slices.Equal(padded, c.IDs) || tr != truncated {
			t.Errorf("line %d: EncodePadded = %v, %v; want EncodeWithMask's", i+1, padded, tr)
		}
		if want := len(unlimited.Encode(c.Text)) > imageRewardLength; truncated != want {
			t.Errorf("line %d: truncated = %v, want %v", i+1, truncated, want)
		}
	}
	if matched != len(cases) || len(cases) != 30 {
		t.Errorf("%d of %d golden lines reproduced, want 30 of 30", matched, len(cases))
	}
	t.Logf("%d/%d golden lines reproduced", matched, len(cases))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestBertBaseUncasedDefaults(t *testing.T) {
	dir := filepath.Dir(testenv.SharedFile(t, sharedRel+"/"+VocabFile))
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"MaxLength", tok.MaxLength(), 512},
		{"CLS", tok.CLS(), 101},
		{"SEP", tok.SEP(), 102},
		{"PadID", tok.PadID(), 0},
		{"UNK", tok.UNK(), 100},
		{"VocabSize", tok.VocabSize(), 30522},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	short, err := tok.WithMaxLength(35)
	if err != nil {
		t.Fatal(err)
	}
	if short.MaxLength() != 35 || tok.MaxLength() != 512 {
		t.Errorf("WithMaxLength(35): %d, original %d; want 35 and the original unchanged", short.MaxLength(), tok.MaxLength())
	}
	if _, err := tok.WithMaxLength(1); err == nil {
		t.Error("WithMaxLength(1) succeeded")
	}
}

// TestEncodeReal pins cases the golden file does not cover, each checked by hand against the
// vocabulary (line number = id).
func TestEncodeReal(t *testing.T) {
	tok := sharedTokenizer(t)
	for _, c := range []struct {
		text string
		want []int
	}{
		{"", []int{101, 102}},
		{"  \t\n ", []int{101, 102}},
		{"a [SEP] b", []int{101, 1037, 102, 1038, 102}},        // special tokens cut out first
		{"a[MASK]b[PAD]", []int{101, 1037, 103, 1038, 0, 102}}, // anywhere, and [PAD] is content
		{"[sep] [Cls]", []int{101, 1031, 19802, 1033, 1031, 18856, 2015, 1033, 102}},
		{"ÉCOLE", []int{101, 12431, 102}},                      // lowercased, accent stripped: "ecole"
		{"e\u0301cole", []int{101, 12431, 102}},                // decomposed input, same word
		{"\u0130", []int{101, 1045, 102}},                      // İ -> i + U+0307 -> "i"
		{"a\u200bb\x00c\ufffd", []int{101, 5925, 102}},         // Cf, NUL and U+FFFD dropped: "abc"
		{"a\xffb", []int{101, 11113, 102}},                     // an invalid byte is U+FFFD, dropped: "ab"
		{"a\u00a0b\u3000c", []int{101, 1037, 1038, 1039, 102}}, // Zs separates words
		{"$5+^`|", []int{101, 1002, 1019, 1009, 1034, 1036, 1064, 102}},
		{"中文", []int{101, 1746, 1861, 102}}, // one word per ideograph, even without spaces
		{strings.Repeat("a", 101), []int{101, 100, 102}},
		{"\u0301", []int{101, 102}}, // a lone combining mark strips to nothing
	} {
		if got := tok.Encode(c.text); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%+q) = %v, want %v", c.text, got, c.want)
		}
	}
	// 100 characters is still one word for WordPiece.
	if got := tok.Encode(strings.Repeat("a", 100)); slices.Contains(got, tok.UNK()) {
		t.Errorf("a word of 100 characters became [UNK]: %v", got)
	}
}

func TestEncodePadded(t *testing.T) {
	tok := sharedTokenizer(t)
	words := func(n int) string { return strings.TrimSpace(strings.Repeat("dog ", n)) } // "dog" is one token (3899)
	for _, c := range []struct {
		name      string
		text      string
		content   int // ids between [CLS] and [SEP]
		truncated bool
	}{
		{"empty", "", 0, false},
		{"short", "a photo of a cat", 5, false},
		{"33 words fill it", words(33), 33, false},
		{"34 words", words(34), 33, true},
		{"100 words", words(100), 33, true},
		{"many pieces", strings.Repeat("supercalifragilisticexpialidocious ", 5), 33, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ids, mask, truncated := tok.EncodeWithMask(c.text)
			if len(ids) != 35 || len(mask) != 35 {
				t.Fatalf("len = %d, %d; want 35", len(ids), len(mask))
			}
			if truncated != c.truncated {
				t.Errorf("truncated = %v, want %v", truncated, c.truncated)
			}
			if ids[0] != tok.CLS() || ids[1+c.content] != tok.SEP() {
				t.Errorf("ids %v: want [CLS], %d content ids, [SEP]", ids, c.content)
			}
			for i, id := range ids {
				inside := i < 2+c.content
				if !inside && id != tok.PadID() || mask[i] != b2i(inside) {
					t.Fatalf("position %d: id %d, mask %d; ids %v mask %v", i, id, mask[i], ids, mask)
				}
			}
		})
	}
}

func TestDecode(t *testing.T) {
	tok := sharedTokenizer(t)
	for _, c := range []struct{ in, want string }{
		{"A photo of an astronaut riding a horse on mars", "a photo of an astronaut riding a horse on mars"},
		{"Hello, World!", "hello , world !"},
		{"Zürich naïve façade", "zurich naive facade"},
		{"unbelievably photorealistic", "unbelievably photorealistic"}, // glued back from its pieces
		{"a [MASK] b", "a [MASK] b"},
		{"", ""},
	} {
		ids, _ := tok.EncodePadded(c.in)
		if got := tok.Decode(ids); got != c.want {
			t.Errorf("Decode(EncodePadded(%q)) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := tok.Decode([]int{-1, 1037, 1 << 30, 4937}); got != "a cat" {
		t.Errorf("Decode with ids outside the vocabulary = %q, want %q", got, "a cat")
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := sharedTokenizer(t)
	cases := goldenCases(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for r := range 40 {
				c := cases[(g*7+r*13)%len(cases)]
				if got, _ := tok.EncodePadded(c.Text); !slices.Equal(got, c.IDs) {
					t.Errorf("goroutine %d: EncodePadded(%q) = %v, want %v", g, c.Text, got, c.IDs)
				}
			}
		})
	}
	wg.Wait()
}
