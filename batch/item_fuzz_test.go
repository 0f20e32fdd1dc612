package batch

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzReadText feeds arbitrary bytes to the text prompts reader (seeds: testdata/fuzz/
// FuzzReadText). Properties: no panic; every item has a trimmed, non-empty prompt on one line
// that is no comment, the ID of its position and a line number that grows; and the prompts,
// written one per line, read back as the same items.
func FuzzReadText(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := ReadText(bytes.NewReader(data))
		if err != nil {
			return
		}
		var text strings.Builder
		line := 0
		for i, it := range items {
			switch {
			case it.Prompt == "" || it.Prompt != strings.TrimSpace(it.Prompt) || strings.HasPrefix(it.Prompt, "#"):
				t.Fatalf("item %d: prompt %q is blank, untrimmed or a comment", i, it.Prompt)
			case strings.Contains(it.Prompt, "\n"):
				t.Fatalf("item %d: prompt %q spans lines", i, it.Prompt)
			case it.Index != i || !ValidID(it.ID) || it.Line <= line:
				t.Fatalf("item %d: index %d, id %q, line %d after line %d", i, it.Index, it.ID, it.Line, line)
			}
			line = it.Line
			text.WriteString(it.Prompt + "\n")
		}
		again, err := ReadText(strings.NewReader(text.String()))
		if err != nil {
			t.Fatalf("prompts written back: %v", err)
		}
		if len(again) != len(items) {
			t.Fatalf("%d items read back as %d", len(items), len(again))
		}
		for i := range items {
			if again[i].Prompt != items[i].Prompt || again[i].ID != items[i].ID {
				t.Fatalf("item %d %+v read back as %+v", i, items[i], again[i])
			}
		}
	})
}

// FuzzReadJSONL feeds arbitrary bytes to the JSONL items reader (seeds: testdata/fuzz/
// FuzzReadJSONL). Properties: no panic; accepted items have valid, unique IDs and their
// positions; and the items, written back with encoding/json one per line, read back as the
// same items.
func FuzzReadJSONL(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := ReadJSONL(bytes.NewReader(data))
		if err != nil {
			return
		}
		var text bytes.Buffer
		seen := map[string]bool{}
		for i, it := range items {
			if it.Index != i || !ValidID(it.ID) || seen[it.ID] {
				t.Fatalf("item %d: index %d, id %q (valid, unique?)", i, it.Index, it.ID)
			}
			seen[it.ID] = true
			line, err := json.Marshal(it)
			if err != nil {
				t.Fatalf("item %d: marshal: %v", i, err)
			}
			text.Write(append(line, '\n'))
		}
		again, err := ReadJSONL(&text)
		if err != nil {
			t.Fatalf("items written back: %v", err)
		}
		if len(again) != len(items) {
			t.Fatalf("%d items read back as %d", len(items), len(again))
		}
		for i, a := range items {
			b := again[i]
			if a.ID != b.ID || a.Prompt != b.Prompt || a.NegativePrompt != b.NegativePrompt ||
				(a.Seed == nil) != (b.Seed == nil) || a.Seed != nil && *a.Seed != *b.Seed ||
				!slices.Equal(a.References, b.References) ||
				(len(a.Overrides) > 0 || len(b.Overrides) > 0) && !reflect.DeepEqual(a.Overrides, b.Overrides) {
				t.Fatalf("item %d %+v read back as %+v", i, a, b)
			}
		}
	})
}
