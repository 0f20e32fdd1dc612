package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
)

// TestTokenizePrintsGoldenIDs runs `fksteer tokenize` on the first golden lines of the real CLIP
// vocabulary (ids from the reference tokenizer) and on a prompt longer than 77 tokens.
func TestTokenizePrintsGoldenIDs(t *testing.T) {
	dir := filepath.Dir(testenv.SharedFile(t, "tokenizers/clip/vocab.json"))
	f, err := os.Open(filepath.Join(dir, "golden.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type line struct {
		Text string `json:"text"`
		IDs  []int  `json:"ids"`
	}
	var golden []line
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() && len(golden) < 12 {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		golden = append(golden, l)
	}
	args := []string{"tokenize", "--tokenizer", dir}
	for _, l := range golden {
		args = append(args, l.Text)
	}
	long := strings.Repeat("cat ", 100)
	args = append(args, long)
	code, out, stderr := cli(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(golden)+1 {
		t.Fatalf("%d output lines for %d texts:\n%s", len(lines), len(golden)+1, out)
	}
	for i, l := range golden {
		var ids []int
		if err := json.Unmarshal([]byte(lines[i]), &ids); err != nil {
			t.Fatalf("line %d %q: %v", i, lines[i], err)
		}
		if !slices.Equal(ids, l.IDs) {
			t.Errorf("tokenize %q = %v, want %v", l.Text, ids, l.IDs)
		}
	}
	var ids []int
	if err := json.Unmarshal([]byte(lines[len(golden)]), &ids); err != nil {
		t.Fatal(err)
	}
	// "cat" is one token (2368); 77 ids: BOS, 75 cats, EOS.
	if len(ids) != 77 || ids[0] != 49406 || ids[1] != 2368 || ids[76] != 49407 {
		t.Errorf("long text: %d ids, first %v, last %d; want 77 ids BOS, cat, ..., EOS", len(ids), ids[:2], ids[len(ids)-1])
	}
	if !strings.Contains(stderr, "longer than the encoder reads") {
		t.Errorf("no warning about the cut-off text; stderr:\n%s", stderr)
	}
}

func TestTokenizeNeedsATokenizer(t *testing.T) {
	code, _, stderr := cli(t, "", "tokenize", "a cat")
	wantError(t, code, stderr, 2, "--tokenizer")
}

// bertGolden reads ../shared/tokenizers/bert-base-uncased/golden.jsonl: prompts and their ids
// as ImageReward's tokenizer gives them, padded to 35.
func bertGolden(t *testing.T) (dir string, texts []string, ids [][]int) {
	t.Helper()
	dir = filepath.Dir(testenv.SharedFile(t, "tokenizers/bert-base-uncased/vocab.txt"))
	data, err := os.ReadFile(filepath.Join(dir, "golden.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(data)) {
		var line struct {
			Text string `json:"text"`
			IDs  []int  `json:"ids"`
		}
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		texts, ids = append(texts, line.Text), append(ids, line.IDs)
	}
	return dir, texts, ids
}

// printedIDs parses tokenize's output, one JSON array per line.
func printedIDs(t *testing.T, out string) [][]int {
	t.Helper()
	var all [][]int
	for l := range strings.Lines(out) {
		var ids []int
		if err := json.Unmarshal([]byte(l), &ids); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		all = append(all, ids)
	}
	return all
}

// TestTokenizeBERTGolden runs `fksteer tokenize` on a vocab.txt folder with every golden line
// of bert-base-uncased: with --max-length 35 --pad it prints exactly the golden ids, and
// without --pad the same ids up to [SEP].
func TestTokenizeBERTGolden(t *testing.T) {
	dir, texts, golden := bertGolden(t)
	for _, pad := range []bool{true, false} {
		args := []string{"tokenize", "--tokenizer", dir, "--max-length", "35"}
		if pad {
			args = append(args, "--pad")
		}
		code, out, stderr := cli(t, "", append(append(args, "--"), texts...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		got := printedIDs(t, out)
		if len(got) != len(golden) {
			t.Fatalf("%d output lines for %d texts:\n%s", len(got), len(golden), out)
		}
		matched := 0
		for i, want := range golden {
			if !pad {
				want = want[:slices.Index(want, 102)+1]
			}
			if slices.Equal(got[i], want) {
				matched++
			} else {
				t.Errorf("pad=%v: tokenize %q = %v, want %v", pad, texts[i], got[i], want)
			}
		}
		t.Logf("pad=%v: %d/%d golden lines", pad, matched, len(golden))
		// The one golden prompt longer than 35 tokens is named in a warning.
		if !strings.Contains(stderr, "longer than the encoder reads") || !strings.Contains(stderr, "limit_tokens=35") {
			t.Errorf("no warning about the cut-off prompt; stderr:\n%s", stderr)
		}
	}
}

// TestTokenizeMaxLength checks --max-length on both kinds: it sets where the text is cut and,
// with --pad, the printed length; the folder's own length applies without it.
func TestTokenizeMaxLength(t *testing.T) {
	bertDir, _, _ := bertGolden(t)
	clipDir := filepath.Dir(testenv.SharedFile(t, "tokenizers/clip/vocab.json"))
	for _, c := range []struct {
		name string
		args []string
		want []int
		warn bool
	}{
		{"bert default 512, unpadded", []string{"--tokenizer", bertDir}, []int{101, 1037, 6302, 1997, 1037, 4937, 102}, false},
		{"bert cut at 5", []string{"--tokenizer", bertDir, "--max-length", "5"}, []int{101, 1037, 6302, 1997, 102}, true},
		{"bert padded to 9", []string{"--tokenizer", bertDir, "--max-length", "9", "--pad"}, []int{101, 1037, 6302, 1997, 1037, 4937, 102, 0, 0}, false},
		{"clip cut at 4", []string{"--tokenizer", clipDir, "--max-length", "4"}, []int{49406, 320, 1125, 49407}, true},
		{"clip padded to 8", []string{"--tokenizer", clipDir, "--max-length", "8", "--pad"}, []int{49406, 320, 1125, 539, 320, 2368, 49407, 49407}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, stderr := cli(t, "", append(append([]string{"tokenize"}, c.args...), "a photo of a cat")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if got := printedIDs(t, out); len(got) != 1 || !slices.Equal(got[0], c.want) {
				t.Errorf("printed %v, want %v", got, c.want)
			}
			if warned := strings.Contains(stderr, "longer than the encoder reads"); warned != c.warn {
				t.Errorf("warning %v, want %v; stderr:\n%s", warned, c.warn, stderr)
			}
		})
	}
	// A padded 512-id line by default: the folder's model_max_length.
	code, out, stderr := cli(t, "", "tokenize", "--tokenizer", bertDir, "--pad", "cat")
	if got := printedIDs(t, out); code != 0 || len(got) != 1 || len(got[0]) != 512 {
		t.Errorf("--pad without --max-length: exit %d, %d lines; want one of 512 ids; stderr:\n%s", code, len(got), stderr)
	}
	for _, bad := range []string{"1", "-3"} {
		code, _, stderr := cli(t, "", "tokenize", "--tokenizer", bertDir, "--max-length", bad, "cat")
		wantError(t, code, stderr, 2, "--max-length")
	}
}

func TestTokenizeNeedsAKnownFolder(t *testing.T) {
	code, _, stderr := cli(t, "", "tokenize", "--tokenizer", t.TempDir(), "a cat")
	wantError(t, code, stderr, 1, "vocab.txt", "merges.txt")
}
