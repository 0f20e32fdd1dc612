package pipelines

import "fmt"

// builtinEncoder returns the named built-in text encoder.
func builtinEncoder(name string) (VectorEncoder, error) {
	switch name {
	case "glyph-tags":
		return newGlyphEncoder()
	}
	return nil, fmt.Errorf("unknown text encoder %q (built in: glyph-tags)", name)
}
