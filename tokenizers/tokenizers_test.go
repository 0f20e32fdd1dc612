package tokenizers_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/tokenizers"
)

// linkDir makes a folder holding links to the named files of src.
func linkDir(t *testing.T, src string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		if err := os.Symlink(filepath.Join(src, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadPicksTheKind(t *testing.T) {
	clipDir := filepath.Dir(testenv.SharedFile(t, "tokenizers/clip/vocab.json"))
	bertDir := filepath.Dir(testenv.SharedFile(t, "tokenizers/bert-base-uncased/vocab.txt"))
	for _, c := range []struct {
		dir    string
		maxLen int
		kind   tokenizers.Kind
		want   []int // "a photo of a cat", padded
	}{
		{clipDir, 0, tokenizers.CLIP, nil}, // 77 ids, checked by length below
		{clipDir, 8, tokenizers.CLIP, []int{49406, 320, 1125, 539, 320, 2368, 49407, 49407}},
		{bertDir, 0, tokenizers.WordPiece, nil},
		{bertDir, 9, tokenizers.WordPiece, []int{101, 1037, 6302, 1997, 1037, 4937, 102, 0, 0}},
	} {
		tok, kind, err := tokenizers.Load(c.dir, c.maxLen)
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := tok.EncodePadded("a photo of a cat")
		wantLen := map[tokenizers.Kind]int{tokenizers.CLIP: 77, tokenizers.WordPiece: 512}[c.kind]
		if c.want != nil {
			wantLen = len(c.want)
		}
		if kind != c.kind || tok.MaxLength() != wantLen || len(ids) != wantLen || c.want != nil && !slices.Equal(ids, c.want) {
			t.Errorf("Load(%s, %d): kind %s, MaxLength %d, ids %v; want %s, %d, %v", c.dir, c.maxLen, kind, tok.MaxLength(), ids, c.kind, wantLen, c.want)
		}
	}
}

func TestDetectErrors(t *testing.T) {
	clipDir := filepath.Dir(testenv.SharedFile(t, "tokenizers/clip/vocab.json"))
	bertDir := filepath.Dir(testenv.SharedFile(t, "tokenizers/bert-base-uncased/vocab.txt"))
	both := linkDir(t, clipDir, "vocab.json", "merges.txt")
	if err := os.Symlink(filepath.Join(bertDir, "vocab.txt"), filepath.Join(both, "vocab.txt")); err != nil {
		t.Fatal(err)
	}
	emptyVocab := t.TempDir()
	if err := os.WriteFile(filepath.Join(emptyVocab, "vocab.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ dir, want string }{
		"both kinds":   {both, "holds both"},
		"half of CLIP": {linkDir(t, clipDir, "vocab.json"), "only one of vocab.json and merges.txt"},
		"empty folder": {t.TempDir(), "holds no tokenizer"},
		"missing":      {filepath.Join(t.TempDir(), "nope"), "no such file"},
		"empty vocab":  {emptyVocab, "empty vocabulary"},
	} {
		_, _, err := tokenizers.Load(c.dir, 0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
	if _, _, err := tokenizers.Load(bertDir, 1); err == nil {
		t.Error("max length 1 accepted")
	}
}
