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

// ItemError is a mistake in the items or in naming their file: a line that is not a JSON
// object, an unknown key, a bad or repeated id, an items file that does not exist or holds no
// items. Only changing the items or the command can fix it, so running the same command again
// cannot help (the CLI exits with its usage code).
type ItemError struct {
	// Line is the item's 1-based line in its file, or 0 when the mistake is not one line's.
	Line int
	Err  error
}

// Error names the line, when there is one, and the mistake.
func (e *ItemError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return e.Err.Error()
}

// Unwrap returns the mistake.
func (e *ItemError) Unwrap() error { return e.Err }

func itemErrorf(line int, format string, args ...any) error {
	return &ItemError{Line: line, Err: fmt.Errorf(format, args...)}
}

// ValidID reports whether id can name an item: 1 to 100 letters, digits, '_' or '-'.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// ReadFile reads the items of a prompts file. Files named *.jsonl, *.ndjson or *.json hold one
// JSON object per line (see [ReadJSONL]); any other file holds one prompt per line (see
// [ReadText]).
func ReadFile(path string) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &ItemError{Err: fmt.Errorf("prompts file %s does not exist", path)}
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
		return nil, &ItemError{Err: fmt.Errorf("prompts file %s holds no items (blank lines and lines starting with # are skipped)", path)}
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
		return nil, scanError(err, len(items))
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
			return nil, itemErrorf(line, "not a JSON object: %w", err)
		}
		if err := keys.Check(doc, reflect.TypeOf(Item{})); err != nil {
			return nil, &ItemError{Line: line, Err: err}
		}
		var it Item
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // keep override values such as large seeds exact
		if err := dec.Decode(&it); err != nil {
			return nil, &ItemError{Line: line, Err: err}
		}
		n := len(items)
		it.Index, it.Line = n, line
		if it.ID == "" {
			it.ID = fmt.Sprintf("%06d", n)
		}
		if !ValidID(it.ID) {
			return nil, itemErrorf(line, "id %q must be 1 to 100 letters, digits, '_' or '-'", it.ID)
		}
		if prev, dup := seen[it.ID]; dup {
			return nil, itemErrorf(line, "id %q is already used on line %d; ids must be unique", it.ID, prev)
		}
		seen[it.ID] = line
		items = append(items, it)
	}
	if err := sc.Err(); err != nil {
		return nil, scanError(err, len(items))
	}
	return items, nil
}

// scanError explains why reading stopped after n items: a line longer than the reader takes is
// a mistake in the items; anything else is the file's (an I/O error).
func scanError(err error, n int) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return &ItemError{Err: fmt.Errorf("the line after item %d is longer than 16 MiB: one item per line, and no prompt that long", n)}
	}
	return err
}
