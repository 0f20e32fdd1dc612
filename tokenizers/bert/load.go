package bert

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/fksteer/fksteer/tokenizers/hfconfig"
)

// File names in a Hugging Face BERT tokenizer folder.
const (
	// VocabFile is the vocabulary: one token per line, the line number (from 0) its id.
	VocabFile         = "vocab.txt"
	configFile        = hfconfig.ConfigFile
	specialTokensFile = hfconfig.SpecialTokensFile
)

// maxVocab bounds the lines a vocabulary may have, so that a file that is not a vocabulary
// cannot make Load hold gigabytes; bert-base-uncased has 30,522.
const maxVocab = 1 << 24

// Load reads the tokenizer of a Hugging Face BERT tokenizer folder. vocab.txt is required.
// tokenizer_config.json (model_max_length, do_lower_case, strip_accents,
// tokenize_chinese_chars and the five special tokens) and special_tokens_map.json (the special
// tokens; these win, as in transformers) are read when present; a token may be a string or an
// object with a "content" string. What no file sets takes bert-base-uncased's value of the
// zero Config. A model_max_length of 1e18 or more is transformers' "no limit" marker and also
// means 512.
//
// A missing, unreadable or malformed file, or a special token the vocabulary lacks, is an
// error that names the file. Load does not read tokenizer.json: its pipeline is the one
// described in the package comment.
func Load(dir string) (*Tokenizer, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, VocabFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bert: %w", err)
	}
	defer f.Close()
	return build(f, path, cfg)
}

// LoadFiles builds a tokenizer from the contents of a vocab.txt with the settings of cfg. It
// is Load for tests and embedded data; errors name the file vocab.txt.
func LoadFiles(vocab io.Reader, cfg Config) (*Tokenizer, error) {
	return build(vocab, VocabFile, cfg)
}

// build is LoadFiles with the name errors should give the vocabulary.
func build(vocab io.Reader, name string, cfg Config) (*Tokenizer, error) {
	if cfg.MaxLength == 0 {
		cfg.MaxLength = DefaultMaxLength
	}
	if cfg.MaxLength < 2 {
		return nil, fmt.Errorf("bert: max length %d leaves no room for [CLS] and [SEP]", cfg.MaxLength)
	}
	t := &Tokenizer{maxLen: cfg.MaxLength, lower: !cfg.KeepCase, strip: !cfg.KeepCase, cjk: !cfg.KeepCJKTogether}
	if cfg.StripAccents != nil {
		t.strip = *cfg.StripAccents
	}
	v, err := t.readVocab(vocab, name)
	if err != nil {
		return nil, err
	}
	for _, s := range []struct {
		what, text, def string
		id              *int
	}{
		{"CLS", cfg.CLSToken, DefaultCLSToken, &t.cls},
		{"SEP", cfg.SEPToken, DefaultSEPToken, &t.sep},
		{"pad", cfg.PadToken, DefaultPadToken, &t.pad},
		{"UNK", cfg.UNKToken, DefaultUNKToken, &t.unk},
		{"mask", cfg.MaskToken, DefaultMaskToken, nil},
	} {
		text := cmp.Or(s.text, s.def)
		id, ok := v[text]
		if !ok {
			if s.id == nil { // transformers tolerates a vocabulary without [MASK]; so do we
				continue
			}
			return nil, fmt.Errorf("bert: %s token %q is not in %s", s.what, text, name)
		}
		if s.id != nil {
			*s.id = id
		}
		if !hasPrefixOf(t.special, text) {
			t.special = append(t.special, special{text: text, id: id})
		}
	}
	return t, nil
}

// hasPrefixOf reports whether text equals a token of list, or one is a prefix of the other: the
// leftmost-match split of splitSpecial needs tokens none of which starts another. Real
// configurations never come close; a duplicate (a pad token that is also [UNK]) is dropped.
func hasPrefixOf(list []special, text string) bool {
	for _, s := range list {
		if strings.HasPrefix(s.text, text) || strings.HasPrefix(text, s.text) {
			return true
		}
	}
	return false
}

// readVocab fills t.decoder, t.words and t.pieces from vocab.txt and returns the vocabulary
// (token text -> id). As in transformers' load_vocab, a token's id is its line
// number from 0, and a token listed twice keeps its later id. A trailing carriage return is
// dropped with the newline, so a vocabulary saved on Windows still reads.
func (t *Tokenizer) readVocab(r io.Reader, name string) (map[string]int, error) {
	vocab := make(map[string]int)
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if len(t.decoder) >= maxVocab {
				return nil, fmt.Errorf("bert: %s has more than %d lines: not a vocabulary", name, maxVocab)
			}
			tok := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			vocab[tok] = len(t.decoder)
			t.decoder = append(t.decoder, tok)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bert: reading %s: %w", name, err)
		}
	}
	if len(vocab) == 0 {
		return nil, fmt.Errorf("bert: %s: empty vocabulary", name)
	}
	// Words start with the whole vocabulary, as in transformers; a word cannot start with
	// "##" anyway, since '#' is punctuation and splits off first.
	t.words = vocab
	t.pieces = make(map[string]int, len(vocab)/4)
	for tok, id := range vocab {
		if rest, ok := strings.CutPrefix(tok, continuation); ok && rest != "" {
			t.pieces[rest] = id
		}
	}
	return vocab, nil
}

// hfConfig is the part of tokenizer_config.json and special_tokens_map.json that Load reads.
type hfConfig struct {
	ModelMaxLength       *json.Number    `json:"model_max_length"`
	DoLowerCase          *bool           `json:"do_lower_case"`
	StripAccents         *bool           `json:"strip_accents"`
	TokenizeChineseChars *bool           `json:"tokenize_chinese_chars"`
	CLSToken             json.RawMessage `json:"cls_token"`
	SEPToken             json.RawMessage `json:"sep_token"`
	PadToken             json.RawMessage `json:"pad_token"`
	UNKToken             json.RawMessage `json:"unk_token"`
	MaskToken            json.RawMessage `json:"mask_token"`
}

// readConfig reads the optional config files of dir into a Config.
func readConfig(dir string) (Config, error) {
	var cfg Config
	err := hfconfig.Read(dir, "bert", func(c *hfConfig, settings bool) error { return c.apply(&cfg, settings) })
	if err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// apply copies the settings c has into cfg; settings other than the special tokens are taken
// only from tokenizer_config.json.
func (c *hfConfig) apply(cfg *Config, settings bool) error {
	for _, f := range []struct {
		key string
		raw json.RawMessage
		dst *string
	}{
		{"cls_token", c.CLSToken, &cfg.CLSToken},
		{"sep_token", c.SEPToken, &cfg.SEPToken},
		{"pad_token", c.PadToken, &cfg.PadToken},
		{"unk_token", c.UNKToken, &cfg.UNKToken},
		{"mask_token", c.MaskToken, &cfg.MaskToken},
	} {
		text, err := hfconfig.TokenText(f.raw)
		if err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
		if text != "" {
			*f.dst = text
		}
	}
	if !settings {
		return nil
	}
	if c.DoLowerCase != nil {
		cfg.KeepCase = !*c.DoLowerCase
	}
	cfg.StripAccents = c.StripAccents // null and absent both mean "follow lowercasing"
	if c.TokenizeChineseChars != nil {
		cfg.KeepCJKTogether = !*c.TokenizeChineseChars
	}
	if c.ModelMaxLength != nil {
		n, err := c.ModelMaxLength.Float64()
		switch {
		case n >= 1e18: // also +Inf, with a range error
			// transformers' VERY_LARGE_INTEGER (int(1e30)): no limit recorded.
		case err != nil:
			return fmt.Errorf("model_max_length: %w", err)
		case n != math.Trunc(n) || n < 2 || n > maxVocab:
			return fmt.Errorf("model_max_length %s: want a whole number of at least 2", *c.ModelMaxLength)
		default:
			cfg.MaxLength = int(n)
		}
	}
	return nil
}
