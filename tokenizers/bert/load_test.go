package bert

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeDir writes files (name -> content) into a fresh temporary folder.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var toyVocabTxt = strings.Join(toyVocab, "\n") + "\n"

func TestLoadConfigFiles(t *testing.T) {
	for _, c := range []struct {
		name            string
		config, special string
		maxLen, pad     int
		encode          []string // "Cat" content tokens
	}{
		{"no config", "", "", 512, 0, []string{"cat"}},
		{"bert-base-uncased", `{"do_lower_case": true, "model_max_length": 512}`, "", 512, 0, []string{"cat"}},
		{"cased", `{"do_lower_case": false, "model_max_length": 16}`, "", 16, 0, []string{"Cat"}},
		{"no-limit marker", `{"model_max_length": 1000000000000000019884624838656, "strip_accents": null}`, "", 512, 0, []string{"cat"}},
		{"special tokens as objects; the map wins",
			`{"pad_token": {"content": "[UNK]", "lstrip": false}, "cls_token": "[CLS]"}`,
			`{"pad_token": {"content": "[MASK]", "normalized": false}}`, 512, 4, []string{"cat"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{VocabFile: toyVocabTxt}
			if c.config != "" {
				files[configFile] = c.config
			}
			if c.special != "" {
				files[specialTokensFile] = c.special
			}
			tok, err := Load(writeDir(t, files))
			if err != nil {
				t.Fatal(err)
			}
			if tok.MaxLength() != c.maxLen || tok.PadID() != c.pad {
				t.Errorf("MaxLength, PadID = %d, %d; want %d, %d", tok.MaxLength(), tok.PadID(), c.maxLen, c.pad)
			}
			want := slices.Concat(toyIDs("[CLS]"), toyIDs(c.encode...), toyIDs("[SEP]"))
			if got := tok.Encode("Cat"); !slices.Equal(got, want) {
				t.Errorf("Encode(Cat) = %v, want %v", got, want)
			}
		})
	}
}

func TestLoadVocabLines(t *testing.T) {
	// CRLF line ends, no final newline, a duplicate (the later line wins) and an empty line.
	tok, err := LoadFiles(strings.NewReader("[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\ncat\r\n\r\ncat\r\n##s"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("cats"); !slices.Equal(got, []int{2, 6, 7, 3}) {
		t.Errorf("Encode(cats) = %v, want [2 6 7 3]", got)
	}
	if tok.VocabSize() != 8 {
		t.Errorf("VocabSize = %d, want 8 (one id per line)", tok.VocabSize())
	}
	if got := tok.Decode([]int{2, 4, 7, 3, 0}); got != "cats" {
		t.Errorf("Decode = %q, want %q", got, "cats")
	}
}

func TestLoadErrors(t *testing.T) {
	conflict := "{\n<<<<<<< HEAD\n  \"model_max_length\": 512,\n=======\n  \"model_max_length\": 35,\n>>>>>>> theirs\n}\n"
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string // in the error
	}{
		{"missing vocab", map[string]string{configFile: `{}`}, "vocab.txt"},
		{"empty vocab", map[string]string{VocabFile: ""}, "vocab.txt: empty vocabulary"},
		{"no [CLS]", map[string]string{VocabFile: "[PAD]\n[UNK]\n[SEP]\n"}, `CLS token "[CLS]" is not in`},
		{"no [UNK]", map[string]string{VocabFile: "[PAD]\n[CLS]\n[SEP]\n"}, `UNK token "[UNK]" is not in`},
		{"pad not in vocab", map[string]string{VocabFile: toyVocabTxt, configFile: `{"pad_token": "<pad>"}`}, `pad token "<pad>" is not in`},
		{"corrupt config", map[string]string{VocabFile: toyVocabTxt, configFile: conflict}, "tokenizer_config.json"},
		{"corrupt special map", map[string]string{VocabFile: toyVocabTxt, specialTokensFile: `{"sep_token": 7}`}, "special_tokens_map.json: sep_token"},
		{"max length 1", map[string]string{VocabFile: toyVocabTxt, configFile: `{"model_max_length": 1}`}, "model_max_length"},
		{"max length 7.5", map[string]string{VocabFile: toyVocabTxt, configFile: `{"model_max_length": 7.5}`}, "model_max_length"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(writeDir(t, c.files))
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
	if _, err := LoadFiles(strings.NewReader(toyVocabTxt), Config{MaxLength: 1}); err == nil {
		t.Error("LoadFiles accepted MaxLength 1")
	}
}
