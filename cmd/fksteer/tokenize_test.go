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
