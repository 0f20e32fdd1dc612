// Package hfconfig reads the configuration files a Hugging Face tokenizer folder may hold beside
// its vocabulary (tokenizer_config.json, special_tokens_map.json), for the tokenizers of
// fksteer's text encoders (tokenizers/clip, tokenizers/bert).
package hfconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The optional config files of a tokenizer folder, in the order Read applies them.
const (
	ConfigFile        = "tokenizer_config.json"
	SpecialTokensFile = "special_tokens_map.json"
)

// Read decodes each of dir's config files that exists into a fresh T and hands it to apply,
// tokenizer_config.json first; settings is true for that file, whose settings (lower-casing,
// maximum length) count, while special_tokens_map.json only names special tokens. Errors are
// prefixed with pkg and the file.
func Read[T any](dir, pkg string, apply func(c *T, settings bool) error) error {
	for _, name := range [...]string{ConfigFile, SpecialTokensFile} {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", pkg, err)
		}
		var c T
		if err := json.Unmarshal(data, &c); err != nil {
			return fmt.Errorf("%s: %s: %w", pkg, path, err)
		}
		if err := apply(&c, name == ConfigFile); err != nil {
			return fmt.Errorf("%s: %s: %w", pkg, path, err)
		}
	}
	return nil
}

// TokenText reads a special token written as a string or as an AddedToken object
// ({"content": "...", ...}); null or absent gives "".
func TokenText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return "", fmt.Errorf("want a string or an object with a \"content\" string, got %s", raw)
	}
	return *obj.Content, nil
}
