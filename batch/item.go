package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"github.com/fksteer/fksteer/internal/keys"
)

// Item is one unit of a batch: a prompt and what else makes its outputs what they are.
type Item struct {
	// ID names the item's files (<id>.png, ...), its record and its manifest row; it is unique
	// within a batch. Items from a text file get their 0-based position, zero-padded ("000042").
	// IDs are 1 to 100 letters, digits, '_' or '-': no '.', so that no item's file names can
	// collide with another's.
	ID string `json:"id,omitempty" yaml:"id"`
	// Prompt is the text prompt; it may be empty (unconditional).
	Prompt string `json:"prompt" yaml:"prompt"`
	// NegativePrompt is what classifier-free guidance steers away from.
	NegativePrompt string `json:"negative_prompt,omitempty" yaml:"negative_prompt"`
	// Seed, when set, is the seed of the item's first image; otherwise [Seed] derives one from
	// the job's base seed and the ID.
	Seed *uint64 `json:"seed,omitempty" yaml:"seed"`
	// Overrides are configuration keys whose values differ for this item (for example steps,
	// guidance or reward). The caller validates them.
	Overrides map[string]any `json:"overrides,omitempty" yaml:"overrides"`
	// References are image files a reward may compare the item's images with, as written in the
	// items file (relative paths are relative to Dir).
	References []string `json:"references,omitempty" yaml:"references"`

	// Index is the item's 0-based position in the list, which decides its shard.
	Index int `json:"-" yaml:"-"`
	// Line is the item's 1-based line in its file, for messages.
	Line int `json:"-" yaml:"-"`
	// Dir is the folder of the items file, against which relative references resolve.
	Dir string `json:"-" yaml:"-"`
}

// ReferencePaths returns the item's references with relative paths resolved against Dir.
func (it Item) ReferencePaths() []string {
	out := make([]string, len(it.References))
	for i, r := range it.References {
		if filepath.IsAbs(r) || it.Dir == "" {
			out[i] = r
		} else {
			out[i] = filepath.Join(it.Dir, r)
		}
	}
	return out
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// ValidID reports whether id can name an item: 1 to 100 letters, digits, '_' or '-'.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// ReadFile reads the items of a prompts file. Files named *.jsonl, *.ndjson or *.json hold one
// JSON object per line (see [ReadJSONL]); any other file holds one prompt per line (see
// [ReadText]).
func ReadFile(path string) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("prompts file %s does not exist", path)
		}
		return nil, fmt.Errorf("read prompts: %w", err)
	}
	defer f.Close()
	var items []Item
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson", ".json":
		items, err = ReadJSONL(f)
	default:
		items, err = ReadText(f)
	}
	if err != nil {
		return nil, fmt.Errorf("prompts file %s: %w", path, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("prompts file %s holds no items (blank lines and lines starting with # are skipped)", path)
	}
	dir := filepath.Dir(path)
	for i := range items {
		items[i].Dir = dir
	}
	return items, nil
}

// ReadText reads one prompt per line. Blank lines and lines whose first non-space character is
// '#' are skipped; surrounding spaces are trimmed. Item i gets the ID fmt.Sprintf("%06d", i).
func ReadText(r io.Reader) ([]Item, error) {
	var items []Item
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		n := len(items)
		items = append(items, Item{ID: fmt.Sprintf("%06d", n), Prompt: text, Index: n, Line: line})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return items, nil
}

// ReadJSONL reads one JSON object per line with the keys of [Item]: prompt, and optionally id,
// seed, negative_prompt, overrides and references. Blank lines and lines starting with '#' are
// skipped. An unknown key is an error naming the line and the closest valid key; an item
// without an id gets its position, zero-padded, as for text files. IDs must be valid and unique.
func ReadJSONL(r io.Reader) ([]Item, error) {
	var items []Item
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for line := 1; sc.Scan(); line++ {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 || raw[0] == '#' {
			continue
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, fmt.Errorf("line %d: not a JSON object: %w", line, err)
		}
		if err := keys.Check(doc, reflect.TypeOf(Item{})); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		var it Item
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // keep override values such as large seeds exact
		if err := dec.Decode(&it); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		n := len(items)
		it.Index, it.Line = n, line
		if it.ID == "" {
			it.ID = fmt.Sprintf("%06d", n)
		}
		if !ValidID(it.ID) {
			return nil, fmt.Errorf("line %d: id %q must be 1 to 100 letters, digits, '_' or '-'", line, it.ID)
		}
		if prev, dup := seen[it.ID]; dup {
			return nil, fmt.Errorf("line %d: id %q is already used on line %d; ids must be unique", line, it.ID, prev)
		}
		seen[it.ID] = line
		items = append(items, it)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return items, nil
}
