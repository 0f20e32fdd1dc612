package bert

import (
	"slices"
	"strings"
	"testing"
)

// toyVocab is a small WordPiece vocabulary in vocab.txt order: the special tokens where
// bert-base-uncased has them relative to each other, then words and "##" pieces.
var toyVocab = []string{
	"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
	"un", "##aff", "##able", "a", "cat", "cats", "##s", "!", ",", "hello", "world", "é",
	"东", "京", "##京", "ecole", "Cat",
}

// toyTokenizer builds a tokenizer from toyVocab with cfg.
func toyTokenizer(t testing.TB, cfg Config) *Tokenizer {
	t.Helper()
	tok, err := LoadFiles(strings.NewReader(strings.Join(toyVocab, "\n")+"\n"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// toyIDs returns the toyVocab ids of tokens.
func toyIDs(tokens ...string) []int {
	ids := make([]int, len(tokens))
	for i, s := range tokens {
		ids[i] = slices.Index(toyVocab, s)
		if ids[i] < 0 {
			panic("toy token " + s + " missing")
		}
	}
	return ids
}

func TestWordPiece(t *testing.T) {
	tok := toyTokenizer(t, Config{MaxLength: 16})
	for _, c := range []struct {
		text string
		want []string
	}{
		{"unaffable", []string{"un", "##aff", "##able"}}, // transformers' docstring example
		{"cats", []string{"cats"}},                       // longest match first, not cat ##s
		{"catss", []string{"cats", "##s"}},
		{"unaffablex", []string{"[UNK]"}}, // an unsplittable rest makes the whole word [UNK]
		{"xcat", []string{"[UNK]"}},       // no entry starts the word
		{"cat, cat!", []string{"cat", ",", "cat", "!"}},
		{"东京", []string{"东", "京"}}, // CJK split first: 京, not ##京
	} {
		got := tok.Encode(c.text)
		if want := toyIDs(c.want...); !slices.Equal(got[1:len(got)-1], want) {
			t.Errorf("Encode(%q) = %v, want [CLS] %v [SEP]", c.text, got, want)
		}
	}
	// A word of MaxWordChars characters is still split; one more makes it [UNK].
	long, err := tok.WithMaxLength(2 * MaxWordChars)
	if err != nil {
		t.Fatal(err)
	}
	word := "cat" + strings.Repeat("s", MaxWordChars-3)
	if got, want := long.Encode(word), slices.Concat(toyIDs("[CLS]", "cats"), slices.Repeat(toyIDs("##s"), MaxWordChars-4), toyIDs("[SEP]")); !slices.Equal(got, want) {
		t.Errorf("a word of %d characters = %v, want cats and %d ##s", MaxWordChars, got, MaxWordChars-4)
	}
	if got := tok.Encode(word + "s"); !slices.Equal(got, toyIDs("[CLS]", "[UNK]", "[SEP]")) {
		t.Errorf("a word of %d characters = %v, want [UNK]", MaxWordChars+1, got)
	}
}

func TestConfigOptions(t *testing.T) {
	no := false
	for _, c := range []struct {
		name string
		cfg  Config
		text string
		want []string
	}{
		{"uncased", Config{}, "Cat École", []string{"cat", "ecole"}},
		{"cased keeps accents", Config{KeepCase: true}, "Cat é", []string{"Cat", "é"}},
		{"lowercase without stripping", Config{StripAccents: &no}, "É", []string{"é"}},
		{"CJK together", Config{KeepCJKTogether: true}, "东京", []string{"东", "##京"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := toyTokenizer(t, c.cfg).Encode(c.text)
			if want := toyIDs(c.want...); !slices.Equal(got[1:len(got)-1], want) {
				t.Errorf("Encode(%q) = %v, want [CLS] %v [SEP]", c.text, got, want)
			}
		})
	}
}

func TestClean(t *testing.T) {
	tok := &Tokenizer{lower: true, cjk: true}
	for _, c := range []struct{ in, want string }{
		{"A\tB\nC\rD\u00a0E\u2003F", "a b c d e f"},
		{"a\x00b\x01c\x7fd\u0085e\u200bf\u200dg\ufeffh\ufffdi", "abcdefghi"}, // NUL, Cc, Cf, U+FFFD
		{"a\U000E0001b\uE000c", "abc"},                                       // Cf tag, private use (Co)
		{"a\u0378b", "ab"},                                                   // unassigned (Cn)
		{"a\u2028b", "a\u2028b"},                                             // Zl is kept, then splits words
		{"ΣΊΣΥΦΟΣ", "σίσυφοσ"},                                               // one character at a time: no final ς
		{"\u0130", "i\u0307"},
		{"x中y", "x 中 y"},
		{"\U00020000", " \U00020000 "}, // extension B
		{"かなカナ한글", "かなカナ한글"},           // not CJK ideographs
	} {
		if got := tok.clean(c.in); got != c.want {
			t.Errorf("clean(%+q) = %+q, want %+q", c.in, got, c.want)
		}
	}
}

func TestBasicWords(t *testing.T) {
	tok := &Tokenizer{lower: true, strip: true, cjk: true}
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"Hello, World!", []string{"hello", ",", "world", "!"}},
		{"don't", []string{"don", "'", "t"}},
		{"e-mail: a@b.c", []string{"e", "-", "mail", ":", "a", "@", "b", ".", "c"}},
		{"$1+2=3 <x> ^_^ `q` |~", []string{"$", "1", "+", "2", "=", "3", "<", "x", ">", "^", "_", "^", "`", "q", "`", "|", "~"}},
		{"«¿¡»—…", []string{"«", "¿", "¡", "»", "—", "…"}}, // Unicode P*
		{"©®™ 😀 ♥", []string{"©®™", "😀", "♥"}},             // symbols (S*) are not punctuation
		{"Crème Brûlée", []string{"creme", "brulee"}},
		{"a\u2028b", []string{"a", "b"}},
		{"\u0301 \u0301\u0302", nil},
	} {
		if got := slices.Collect(tok.basicWords(c.in)); !slices.Equal(got, c.want) {
			t.Errorf("basicWords(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestIsPunct(t *testing.T) {
	var ascii []rune
	for r := rune(0); r < 128; r++ {
		if isPunct(r) {
			ascii = append(ascii, r)
		}
	}
	if got, want := string(ascii), "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"; got != want {
		t.Errorf("ASCII punctuation %q, want %q", got, want)
	}
	for _, r := range "、。「」・‘’“”„†‡•‰′″‹›※‼⁇" {
		if !isPunct(r) {
			t.Errorf("isPunct(%q) = false, want true (category P)", r)
		}
	}
	for _, r := range "a1 ©€£¥±×÷" {
		if isPunct(r) {
			t.Errorf("isPunct(%q) = true, want false", r)
		}
	}
}

func TestSplitSpecial(t *testing.T) {
	tok := toyTokenizer(t, Config{MaxLength: 32})
	for _, c := range []struct {
		text string
		want []string
	}{
		{"[CLS]", []string{"[CLS]"}},
		{"a[SEP][SEP]cat", []string{"a", "[SEP]", "[SEP]", "cat"}},
		{"[[MASK]]", []string{"[UNK]", "[MASK]", "[UNK]"}}, // '[' and ']' are not in the toy vocabulary
		{"[Sep] [SEP ]", []string{"[UNK]", "[UNK]", "[UNK]", "[UNK]", "[UNK]", "[UNK]"}},
	} {
		got := tok.Encode(c.text)
		if want := toyIDs(c.want...); !slices.Equal(got[1:len(got)-1], want) {
			t.Errorf("Encode(%q) = %v, want [CLS] %v [SEP]", c.text, got, want)
		}
	}
}
