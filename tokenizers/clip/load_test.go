package clip

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
)

// toyFiles returns a small CLIP-style vocab.json and merges.txt built the way OpenAI built
// CLIP's: the 256 byte symbols, the same with </w>, one token per merge, then BOS and EOS.
func toyFiles(merges ...string) (vocab, mergesTxt string) {
	v := map[string]int{}
	add := func(tok string) {
		if _, ok := v[tok]; !ok {
			v[tok] = len(v)
		}
	}
	for _, r := range byteToUnicode {
		add(string(r))
	}
	for _, r := range byteToUnicode {
		add(string(r) + endOfWord)
	}
	for _, m := range merges {
		add(strings.Replace(m, " ", "", 1))
	}
	add(DefaultBOSToken)
	add(DefaultEOSToken)
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(data), "#version: 0.2\n" + strings.Join(merges, "\n") + "\n"
}

var toyMerges = []string{"c a", "ca t</w>", "d o", "do g</w>"}

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

func TestLoadFilesToy(t *testing.T) {
	vocab, merges := toyFiles(toyMerges...)
	tok, err := LoadFiles(strings.NewReader(vocab), strings.NewReader(merges), Config{MaxLength: 6})
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if err := json.Unmarshal([]byte(vocab), &v); err != nil {
		t.Fatal(err)
	}
	bos, eos := v[DefaultBOSToken], v[DefaultEOSToken]
	want := []int{bos, v["cat</w>"], v["dog</w>"], v["ca"], v["d</w>"], eos}
	ids, truncated := tok.EncodePadded("Cat DOG cad")
	if !slices.Equal(ids, want) || truncated {
		t.Errorf("EncodePadded = %v, %v; want %v, false", ids, truncated, want)
	}
	ids, truncated = tok.EncodePadded("cat dog cad cat")
	if !truncated || ids[5] != eos || len(ids) != 6 {
		t.Errorf("EncodePadded of 5 tokens into 4 = %v, %v; want EOS last and truncated", ids, truncated)
	}
	if ids, _ := tok.EncodePadded("dog"); !slices.Equal(ids, []int{bos, v["dog</w>"], eos, eos, eos, eos}) {
		t.Errorf("EncodePadded(dog) = %v, want padding with EOS", ids)
	}
	if got := tok.Decode(tok.Encode("cat dog cad")); got != "cat dog cad" {
		t.Errorf("Decode = %q", got)
	}
}

func TestLoadConfigFiles(t *testing.T) {
	vocab, merges := toyFiles(toyMerges...)
	var v map[string]int
	if err := json.Unmarshal([]byte(vocab), &v); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name            string
		config, special string
		maxLen, pad     int
		encodeA         int // id of "A"
	}{
		{"no config", "", "", 77, v[DefaultEOSToken], v["a</w>"]},
		{"SDXL tokenizer_2",
			`{"model_max_length": 77, "pad_token": "!", "do_lower_case": true,
			  "bos_token": {"__type": "AddedToken", "content": "<|startoftext|>", "normalized": true}}`,
			`{"pad_token": {"content": "!", "lstrip": false, "normalized": false}, "eos_token": "<|endoftext|>"}`,
			77, v["!"], v["a</w>"]},
		{"special_tokens_map wins", `{"pad_token": "!"}`, `{"pad_token": "<|endoftext|>"}`, 77, v[DefaultEOSToken], v["a</w>"]},
		{"no-limit marker", `{"model_max_length": 1000000000000000019884624838656, "pad_token": null}`, "", 77, v[DefaultEOSToken], v["a</w>"]},
		{"short, cased", `{"model_max_length": 16, "do_lower_case": false}`, "", 16, v[DefaultEOSToken], v["A</w>"]},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{vocabFile: vocab, mergesFile: merges}
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
			ids, _ := tok.EncodePadded("A")
			if len(ids) != c.maxLen || ids[1] != c.encodeA || ids[2] != tok.EOS() || ids[3] != c.pad {
				t.Errorf("EncodePadded(A) = %v", ids)
			}
		})
	}
}

// TestLoadSDXLConfig loads the real vocabulary with SDXL tokenizer_2's settings: padding is
// "!" (id 0), while a "!" in the prompt is still the ordinary token "!</w>" (256), as in
// open_clip (huggingface/diffusers#4153).
func TestLoadSDXLConfig(t *testing.T) {
	src := filepath.Dir(testenv.SharedFile(t, "tokenizers/clip/vocab.json"))
	dir := writeDir(t, map[string]string{
		configFile:        `{"model_max_length": 77, "pad_token": "!", "do_lower_case": true}`,
		specialTokensFile: `{"pad_token": {"content": "!", "normalized": false}}`,
	})
	for _, name := range []string{vocabFile, mergesFile} {
		if err := os.Symlink(filepath.Join(src, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tok.PadID() != 0 {
		t.Fatalf("PadID = %d, want 0", tok.PadID())
	}
	ids, _ := tok.EncodePadded("hello!")
	if want := []int{49406, 3306, 256, 49407, 0, 0}; !slices.Equal(ids[:6], want) || len(ids) != 77 || ids[76] != 0 {
		t.Errorf("EncodePadded(hello!) = %v, want %v then zeros", ids, want)
	}
	if got := tok.Decode(ids); got != "hello !" {
		t.Errorf("Decode = %q, want %q", got, "hello !")
	}
}

func TestLoadErrors(t *testing.T) {
	toyVocab, merges := toyFiles(toyMerges...)
	vocab := toyVocab
	if p := filepath.Join(testenv.SharedDir(), "tokenizers/clip/vocab.json"); fileExists(p) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		vocab = string(data) // a real one to cut short below
	}
	sharedID := strings.Replace(toyVocab, `{`, `{"!!":0,`, 1) // 0 is also some byte's id
	conflict := "{\n<<<<<<< HEAD\n  \"pad_token\": \"<|endoftext|>\",\n=======\n  \"pad_token\": \"!\",\n>>>>>>> theirs\n}\n"
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string // in the error
	}{
		{"missing merges", map[string]string{vocabFile: vocab}, "merges.txt"},
		{"missing vocab", map[string]string{mergesFile: merges}, "vocab.json"},
		{"truncated vocab", map[string]string{vocabFile: vocab[:strings.LastIndex(vocab[:len(vocab)/2], ",")+1], mergesFile: merges}, "vocab.json: unexpected end of JSON input"},
		{"vocab not an object", map[string]string{vocabFile: `["a"]`, mergesFile: merges}, "vocab.json"},
		{"empty vocab", map[string]string{vocabFile: `{}`, mergesFile: merges}, "vocab.json: empty vocabulary"},
		{"not byte-level", map[string]string{vocabFile: `{"a": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}`, mergesFile: merges}, "not a CLIP byte-level vocabulary"},
		{"shared id", map[string]string{vocabFile: sharedID, mergesFile: merges}, "vocab.json: id 0 is given to both"},
		{"negative id", map[string]string{vocabFile: `{"a": -1}`, mergesFile: merges}, "vocab.json: token \"a\" has id -1"},
		{"bad merge line", map[string]string{vocabFile: vocab, mergesFile: "#version: 0.2\nc a\nca t</w> x\n"}, "merges.txt:3"},
		{"merge of unknown token", map[string]string{vocabFile: vocab, mergesFile: "#version: 0.2\nc a\nqqq a\n"}, `merges.txt:3: token "qqq"`},
		{"corrupt config", map[string]string{vocabFile: vocab, mergesFile: merges, configFile: conflict}, "tokenizer_config.json"},
		{"corrupt special map", map[string]string{vocabFile: vocab, mergesFile: merges, specialTokensFile: `{"pad_token": 7}`}, "special_tokens_map.json: pad_token"},
		{"pad not in vocab", map[string]string{vocabFile: vocab, mergesFile: merges, configFile: `{"pad_token": "<pad>"}`}, `pad token "<pad>" is not in`},
		{"max length 1", map[string]string{vocabFile: vocab, mergesFile: merges, configFile: `{"model_max_length": 1}`}, "model_max_length"},
		{"max length 7.5", map[string]string{vocabFile: vocab, mergesFile: merges, configFile: `{"model_max_length": 7.5}`}, "model_max_length"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(writeDir(t, c.files))
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			t.Log(err)
		})
	}
	if _, err := LoadFiles(strings.NewReader(vocab), strings.NewReader(merges), Config{MaxLength: 1}); err == nil {
		t.Error("LoadFiles accepted MaxLength 1")
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestEncodeHugeMaxLength checks that Encode's cost follows the prompt, not MaxLength.
func TestEncodeHugeMaxLength(t *testing.T) {
	vocab, merges := toyFiles(toyMerges...)
	tok, err := LoadFiles(strings.NewReader(vocab), strings.NewReader(merges), Config{MaxLength: 1 << 24})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ids := tok.Encode("cat dog")
	runtime.ReadMemStats(&after)
	if len(ids) != 4 {
		t.Errorf("Encode = %v, want 4 ids", ids)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("Encode of two words allocated %d bytes", n)
	}
}

func TestWithMaxLength(t *testing.T) {
	vocab, merges := toyFiles(toyMerges...)
	tok, err := LoadFiles(strings.NewReader(vocab), strings.NewReader(merges), Config{})
	if err != nil {
		t.Fatal(err)
	}
	short, err := tok.WithMaxLength(3)
	if err != nil {
		t.Fatal(err)
	}
	ids, truncated := short.EncodePadded("cat dog")
	if want := []int{tok.BOS(), tok.Encode("cat")[1], tok.EOS()}; !slices.Equal(ids, want) || !truncated {
		t.Errorf("EncodePadded at length 3 = %v, %v; want %v, true", ids, truncated, want)
	}
	if tok.MaxLength() != 77 || short.MaxLength() != 3 {
		t.Errorf("MaxLength = %d (original), %d; want 77, 3", tok.MaxLength(), short.MaxLength())
	}
	if _, err := tok.WithMaxLength(1); err == nil {
		t.Error("WithMaxLength(1) succeeded")
	}
}
