package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/pipelines/sd"
	"github.com/fksteer/fksteer/tokenizers/clip"
)

func (a *app) tokenizeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokenize [--tokenizer DIR | --model SD-FOLDER] TEXT...",
		Short: "Print the CLIP token ids of texts, as a Stable Diffusion text encoder receives them",
		Long: `Tokenizes each TEXT with a CLIP tokenizer folder (vocab.json and merges.txt, as in the tokenizer/
folder of a Stable Diffusion export) and prints one JSON array of ids per text: BOS, the text's
tokens, EOS, without padding. A text longer than the encoder reads (77 ids) is cut, keeping EOS
last, with a warning naming it. Without --tokenizer, the tokenizer/ folder of the --model export
is used.`,
		Example: `  fksteer tokenize --tokenizer sd15/tokenizer "a photo of a cat" "A red \"A\""
  fksteer tokenize --model sd15 "a photo of a cat"`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("tokenize needs at least one text")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.tokenize(args) },
	}
	addFlags(cmd.Flags(), append(pick(samplingSettings, "model"), pick(tokenizeSettings, "tokenizer")...))
	return cmd
}

func (a *app) tokenize(texts []string) error {
	dir := a.v.GetString("tokenizer")
	if dir == "" {
		model := a.v.GetString("model")
		if !sd.IsExport(model) {
			return usageError{fmt.Errorf("tokenize needs --tokenizer DIR (a folder with vocab.json and merges.txt) or --model naming a Stable Diffusion export folder")}
		}
		dir = filepath.Join(model, "tokenizer")
	}
	tok, err := clip.Load(dir)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(a.stdout)
	for _, text := range texts {
		if _, truncated := tok.EncodePadded(text); truncated {
			a.log.Warn("text is longer than the encoder reads; the end is cut off", "limit_tokens", tok.MaxLength(), "text", text)
		}
		if err := enc.Encode(tok.Encode(text)); err != nil {
			return err
		}
	}
	return nil
}
