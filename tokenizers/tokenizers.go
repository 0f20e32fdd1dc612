// Package tokenizers opens a Hugging Face tokenizer folder whatever its kind: CLIP's byte-level
// BPE (package clip: vocab.json and merges.txt, Stable Diffusion's text encoders and the
// CLIP-based rewards) or BERT's WordPiece (package bert: vocab.txt, BLIP's text encoder and so
// ImageReward). The kind is read from the files the folder holds, never from its name.
//
// It does not tokenize anything itself; the two packages do, behind one interface.
package tokenizers

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fksteer/fksteer/tokenizers/bert"
	"github.com/fksteer/fksteer/tokenizers/clip"
)

// Tokenizer is what *clip.Tokenizer and *bert.Tokenizer have in common: text to a fixed
// number of ids framed by a start and an end token, and back.
type Tokenizer interface {
	// Encode returns the ids of text framed by the start and end tokens, truncated to
	// MaxLength with the end token kept last, without padding.
	Encode(text string) []int
	// EncodePadded returns exactly MaxLength ids: Encode's, then PadID. truncated reports
	// that the end of the text was cut off.
	EncodePadded(text string) (ids []int, truncated bool)
	// Decode turns ids back into text for display.
	Decode(ids []int) string
	// MaxLength is the number of ids the text encoder reads.
	MaxLength() int
	// PadID is the id EncodePadded pads with.
	PadID() int
	// VocabSize bounds the ids: every one is in [0, VocabSize).
	VocabSize() int
}

// Kind is the algorithm of a tokenizer folder.
type Kind string

// The kinds Load opens.
const (
	// CLIP is byte-level BPE read from vocab.json and merges.txt (package clip).
	CLIP Kind = "clip"
	// WordPiece is BERT's WordPiece read from vocab.txt (package bert).
	WordPiece Kind = "wordpiece"
)

// Detect says which kind of tokenizer dir holds: vocab.json with merges.txt is CLIP, vocab.txt
// without them is WordPiece. A folder with both, with half of CLIP's pair, or with neither is an
// error that lists what it holds and what was expected.
func Detect(dir string) (Kind, error) {
	has := func(name string) (bool, error) {
		_, err := os.Stat(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return err == nil, err
	}
	var present [3]bool
	for i, name := range [...]string{"vocab.json", "merges.txt", bert.VocabFile} {
		ok, err := has(name)
		if err != nil {
			return "", fmt.Errorf("tokenizer %s: %w", dir, err)
		}
		present[i] = ok
	}
	bpeJSON, merges, wordPiece := present[0], present[1], present[2]
	switch {
	case bpeJSON && merges && wordPiece:
		return "", fmt.Errorf("tokenizer %s holds both a CLIP tokenizer (vocab.json, merges.txt) and a WordPiece vocab.txt; keep one", dir)
	case bpeJSON && merges:
		return CLIP, nil
	case bpeJSON || merges:
		return "", fmt.Errorf("tokenizer %s has only one of vocab.json and merges.txt; a CLIP tokenizer needs both", dir)
	case wordPiece:
		return WordPiece, nil
	}
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("tokenizer: %w", err)
	}
	return "", fmt.Errorf("tokenizer %s holds no tokenizer: want vocab.json and merges.txt (CLIP BPE) or vocab.txt (BERT WordPiece)", dir)
}

// Load opens the tokenizer of dir, of the kind [Detect] finds, with its own configuration
// files. maxLength, when positive, replaces the length the folder sets (or its package's
// default: 77 for CLIP, 512 for BERT).
func Load(dir string, maxLength int) (Tokenizer, Kind, error) {
	kind, err := Detect(dir)
	if err != nil {
		return nil, "", err
	}
	switch kind {
	case CLIP:
		tok, err := clip.Load(dir)
		if err == nil && maxLength > 0 {
			tok, err = tok.WithMaxLength(maxLength)
		}
		if err != nil {
			return nil, "", err
		}
		return tok, kind, nil
	default:
		tok, err := bert.Load(dir)
		if err == nil && maxLength > 0 {
			tok, err = tok.WithMaxLength(maxLength)
		}
		if err != nil {
			return nil, "", err
		}
		return tok, kind, nil
	}
}
