package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/pipelines/sd"
	"github.com/fksteer/fksteer/tokenizers"
)

// tokenizeFlags are tokenize's per-run flags: they shape one printout, so they are not
// configuration keys.
type tokenizeFlags struct {
	maxLength int
	pad       bool
}

func (a *app) tokenizeCommand() *cobra.Command {
	var f tokenizeFlags
	cmd := &cobra.Command{
		Use:   "tokenize [--tokenizer DIR | --model SD-FOLDER] [--max-length N] [--pad] [--] TEXT...",
		Short: "Print the token ids of texts, as a text encoder receives them (CLIP BPE or BERT WordPiece)",
		Long: `Tokenizes each TEXT and prints one JSON array of ids per text: the start token, the text's
tokens, the end token, without padding (with --pad, padded to the full length, as the encoder
reads them). The tokenizer's kind follows from what the folder holds: vocab.json and merges.txt
are CLIP's byte-level BPE (Stable Diffusion's text encoders; BOS 49406, EOS 49407), vocab.txt
alone is BERT's WordPiece (BLIP's text encoder, so ImageReward; [CLS] 101, [SEP] 102, pad 0).

A text longer than the encoder reads (--max-length, else the folder's model_max_length: 77 for
CLIP, 512 for bert-base-uncased) is cut, keeping the end token last, with a warning naming it.
ImageReward reads 35. Without --tokenizer, the tokenizer/ folder of the --model export is used.
Put -- before texts that start with a dash.`,
		Example: `  fksteer tokenize --tokenizer sd15/tokenizer "a photo of a cat" "A red \"A\""
  fksteer tokenize --model sd15 "a photo of a cat"
  fksteer tokenize --tokenizer imagereward/tokenizer --max-length 35 --pad -- "a photo of a cat"`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("tokenize needs at least one text")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.tokenize(args, f) },
	}
	addFlags(cmd.Flags(), append(pick(samplingSettings, "model"), pick(tokenizeSettings, "tokenizer")...))
	cmd.Flags().IntVar(&f.maxLength, "max-length", 0, "ids per text, start and end tokens included (0 = the tokenizer folder's model_max_length)")
	cmd.Flags().BoolVar(&f.pad, "pad", false, "pad every text's ids to the full length with the pad id")
	return cmd
}

func (a *app) tokenize(texts []string, f tokenizeFlags) error {
	if f.maxLength < 0 || f.maxLength == 1 {
		return usageError{fmt.Errorf("--max-length %d: want 0 (the tokenizer's own) or at least 2, for the start and end tokens", f.maxLength)}
	}
	dir := a.v.GetString("tokenizer")
	if dir == "" {
		model := a.v.GetString("model")
		if !sd.IsExport(model) {
			return usageError{fmt.Errorf("tokenize needs --tokenizer DIR (a folder with vocab.json and merges.txt, or vocab.txt) or --model naming a Stable Diffusion export folder")}
		}
		dir = filepath.Join(model, "tokenizer")
	}
	tok, kind, err := tokenizers.Load(dir, f.maxLength)
	if err != nil {
		return err
	}
	a.log.Debug("tokenizer", "dir", dir, "kind", kind, "max_length", tok.MaxLength())
	enc := json.NewEncoder(a.stdout)
	for _, text := range texts {
		ids, truncated := tok.EncodePadded(text)
		if truncated {
			a.log.Warn("text is longer than the encoder reads; the end is cut off", "limit_tokens", tok.MaxLength(), "text", text)
		}
		if !f.pad {
			ids = tok.Encode(text)
		}
		if err := enc.Encode(ids); err != nil {
			return err
		}
	}
	return nil
}
