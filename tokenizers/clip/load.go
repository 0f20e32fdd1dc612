package clip

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/fksteer/fksteer/tokenizers/hfconfig"
)

// File names in a diffusers/optimum tokenizer/ folder.
const (
	vocabFile         = "vocab.json"
	mergesFile        = "merges.txt"
	configFile        = hfconfig.ConfigFile
	specialTokensFile = hfconfig.SpecialTokensFile
)

// maxVocab bounds the ids a vocabulary may use, so that a corrupt file cannot make Load
// allocate gigabytes; CLIP's largest id is 49407.
const maxVocab = 1 << 24

// Load reads the tokenizer of a diffusers/optimum tokenizer/ folder (tokenizer/ or
// tokenizer_2/ of an SD export). vocab.json and merges.txt are required.
// tokenizer_config.json (model_max_length, bos_token, eos_token, pad_token, do_lower_case)
// and special_tokens_map.json (bos_token, eos_token, pad_token; these win, as in
// transformers) are read when present; a token may be a string or an object with a
// "content" string. What no file sets takes the SD 1.x value of the zero Config. A
// model_max_length of 1e18 or more is transformers' "no limit" marker and also means 77.
//
// A missing, unreadable or malformed file, or a token the vocabulary lacks, is an error that
// names the file. Load does not read tokenizer.json: its pipeline is the one described in
// the package comment.
func Load(dir string) (*Tokenizer, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	vocabPath := filepath.Join(dir, vocabFile)
	vocab, err := os.Open(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	defer vocab.Close()
	mergesPath := filepath.Join(dir, mergesFile)
	merges, err := os.Open(mergesPath)
	if err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	defer merges.Close()
	return build(vocab, vocabPath, merges, mergesPath, cfg)
}

// LoadFiles builds a tokenizer from the contents of vocab.json (a JSON object from token
// text, in GPT-2's byte alphabet, to id) and merges.txt (an optional "#version" line, then one
// "left right" pair per line, best first), with the settings of cfg. It is Load for tests and
// embedded data; errors name the files as vocab.json and merges.txt.
func LoadFiles(vocab, merges io.Reader, cfg Config) (*Tokenizer, error) {
	return build(vocab, vocabFile, merges, mergesFile, cfg)
}

// build is LoadFiles with the names errors should give the two files.
func build(vocab io.Reader, vocabName string, merges io.Reader, mergesName string, cfg Config) (*Tokenizer, error) {
	if cfg.MaxLength == 0 {
		cfg.MaxLength = DefaultMaxLength
	}
	if cfg.MaxLength < 2 {
		return nil, fmt.Errorf("clip: max length %d leaves no room for BOS and EOS", cfg.MaxLength)
	}
	t := &Tokenizer{maxLen: cfg.MaxLength, lower: !cfg.KeepCase, cache: newWordCache()}
	v, err := t.readVocab(vocab, vocabName)
	if err != nil {
		return nil, err
	}
	if err := t.readMerges(merges, mergesName, v); err != nil {
		return nil, err
	}

	special := func(what, text, def string) (int, string, error) {
		if text == "" {
			text = def
		}
		id, ok := v[text]
		if !ok {
			return 0, "", fmt.Errorf("clip: %s token %q is not in %s", what, text, vocabName)
		}
		return id, text, nil
	}
	var bosText string
	if t.bos, bosText, err = special("BOS", cfg.BOSToken, DefaultBOSToken); err != nil {
		return nil, err
	}
	if t.eos, t.eosText, err = special("EOS", cfg.EOSToken, DefaultEOSToken); err != nil {
		return nil, err
	}
	if t.pad, _, err = special("pad", cfg.PadToken, DefaultPadToken); err != nil {
		return nil, err
	}
	// As in CLIP's tokenizer.json, EOS is matched in the raw prompt and BOS in the normalised
	// one. The pad token is not matched at all: transformers' slow tokenizer does match SDXL's
	// pad "!" and turns every "!" into id 0, unlike the open_clip tokenizer SD 2.x and SDXL
	// were trained with (huggingface/diffusers#4153).
	t.bosNorm = t.normalize(bosText)
	return t, nil
}

// readVocab returns the vocabulary (token text -> id) and fills t.decoder and the byte
// symbol ids.
func (t *Tokenizer) readVocab(r io.Reader, name string) (map[string]int, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("clip: reading %s: %w", name, err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, fmt.Errorf("clip: %s: %w", name, err)
	}
	if len(vocab) == 0 {
		return nil, fmt.Errorf("clip: %s: empty vocabulary", name)
	}
	size := 0
	for tok, id := range vocab {
		if id < 0 || id >= maxVocab {
			return nil, fmt.Errorf("clip: %s: token %q has id %d, outside [0, %d)", name, tok, id, maxVocab)
		}
		size = max(size, id+1)
	}
	t.decoder = make([]string, size)
	for tok, id := range vocab {
		if prev := t.decoder[id]; prev != "" || tok == "" {
			return nil, fmt.Errorf("clip: %s: id %d is given to both %q and %q", name, id, prev, tok)
		}
		t.decoder[id] = tok
	}
	for b, r := range byteToUnicode {
		sym := string(r)
		id, ok := vocab[sym]
		idEnd, okEnd := vocab[sym+endOfWord]
		if !ok || !okEnd {
			return nil, fmt.Errorf("clip: %s: byte %#02x has no token %q or %q: not a CLIP byte-level vocabulary",
				name, b, sym, sym+endOfWord)
		}
		t.byteID[b], t.byteEndID[b] = id, idEnd
	}
	return vocab, nil
}

// readMerges fills t.merges. As in Hugging Face's BPE.read_file, lines starting with
// "#version" are skipped and a pair listed twice keeps its later rank.
func (t *Tokenizer) readMerges(r io.Reader, name string, vocab map[string]int) error {
	t.merges = make(map[uint64]merge)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	rank := int32(0)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.HasPrefix(text, "#version") {
			continue
		}
		left, right, ok := strings.Cut(text, " ")
		if !ok || left == "" || right == "" || strings.Contains(right, " ") {
			return fmt.Errorf("clip: %s:%d: want two tokens separated by one space, got %q", name, line, text)
		}
		ids := [3]int{}
		for i, tok := range [3]string{left, right, left + right} {
			id, ok := vocab[tok]
			if !ok {
				return fmt.Errorf("clip: %s:%d: token %q is not in the vocabulary", name, line, tok)
			}
			ids[i] = id
		}
		t.merges[pairKey(int32(ids[0]), int32(ids[1]))] = merge{rank: rank, id: int32(ids[2])}
		rank++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("clip: reading %s: %w", name, err)
	}
	return nil
}

// hfConfig is the part of tokenizer_config.json and special_tokens_map.json that Load reads.
type hfConfig struct {
	ModelMaxLength *json.Number    `json:"model_max_length"`
	BOSToken       json.RawMessage `json:"bos_token"`
	EOSToken       json.RawMessage `json:"eos_token"`
	PadToken       json.RawMessage `json:"pad_token"`
	DoLowerCase    *bool           `json:"do_lower_case"`
}

// readConfig reads the optional config files of dir into a Config.
func readConfig(dir string) (Config, error) {
	var cfg Config
	err := hfconfig.Read(dir, "clip", func(c *hfConfig, settings bool) error { return c.apply(&cfg, settings) })
	if err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// apply copies the settings c has into cfg; settings (model_max_length, do_lower_case) are
// taken only from tokenizer_config.json.
func (c *hfConfig) apply(cfg *Config, settings bool) error {
	for _, f := range []struct {
		key string
		raw json.RawMessage
		dst *string
	}{
		{"bos_token", c.BOSToken, &cfg.BOSToken},
		{"eos_token", c.EOSToken, &cfg.EOSToken},
		{"pad_token", c.PadToken, &cfg.PadToken},
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
