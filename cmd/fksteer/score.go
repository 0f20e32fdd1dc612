package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/rewards"
)

func (a *app) scoreCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "score --reward SPEC [--prompt TEXT] IMAGE...",
		Short: "Score image files with a reward and print every part of every score",
		Long: `Scores PNG, JPEG or WebP files with a reward spec, as steering would score a particle, and prints
one JSON object per image, in argument order: the total score and each part (name, weight, score;
for OCR also the text read). Images of one size are scored together in one batch. A score that
is NaN or infinite prints as null. The reward key of the config file applies when --reward is not
given. docs/rewards.md lists every reward and option.`,
		Example: `  fksteer score --reward ocr --prompt 'a sign that says "open"' sign.png
  fksteer score --reward 'dino:model=dinov2.onnx,ref=cat.png' a.png b.png
  fksteer score --reward '0.7*classifier:model=mnist-8.onnx,target=3,crop=28+0.3*color:target=#ffffff' *.png`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("score needs at least one image file")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.score(cmd, args) },
	}
	addFlags(cmd.Flags(), append(pick(samplingSettings, "reward"), pick(generateSettings, "prompt")...))
	return cmd
}

// scoredImage is one line of `fksteer score`'s output.
type scoredImage struct {
	Image string       `json:"image"`
	Score jsonFloat    `json:"score"`
	Parts []scoredPart `json:"parts"`
}

// scoredPart is one part of a score: the reward itself, or one term of a composite.
type scoredPart struct {
	Name   string    `json:"name"`
	Weight float64   `json:"weight"`
	Score  jsonFloat `json:"score"`
	// Text is what an OCR part read (present, possibly empty, only for rewards that read text).
	Text *string `json:"text,omitempty"`
}

// jsonFloat encodes NaN and ±Inf, which JSON cannot represent, as null.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

func (a *app) score(cmd *cobra.Command, paths []string) error {
	spec := a.v.GetString("reward")
	if spec == "" {
		return usageError{errors.New("score needs a reward: --reward SPEC (see docs/rewards.md)")}
	}
	imgs := make([]models.Images, len(paths))
	for i, p := range paths {
		var err error
		if imgs[i], err = rewards.LoadImage(p); err != nil {
			return err
		}
	}
	opts, err := a.initRuntime()
	if err != nil {
		return err
	}
	r, err := rewards.Parse(spec, rewards.Env{ModelOptions: opts})
	if err != nil {
		return err
	}
	defer r.Close()
	prompt := a.v.GetString("prompt")
	out := make([]scoredImage, len(paths))
	for _, group := range sameSize(imgs) {
		batch := stack(imgs, group)
		scores, parts, err := rewards.Explain(cmd.Context(), r, batch, prompt)
		if err != nil {
			return fmt.Errorf("reward %s: %w", r.Name(), err)
		}
		for j, i := range group {
			out[i] = scoredImage{Image: paths[i], Score: jsonFloat(scores[j])}
			for _, p := range parts[j] {
				sp := scoredPart{Name: p.Name, Weight: p.Weight, Score: jsonFloat(p.Score)}
				if p.HasText {
					sp.Text = &p.Text
				}
				out[i].Parts = append(out[i].Parts, sp)
			}
		}
	}
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	for _, o := range out {
		if err := enc.Encode(o); err != nil {
			return err
		}
	}
	return nil
}

// sameSize groups the indices of images by channels and size, in order of first appearance,
// so each group is scored as one batch.
func sameSize(imgs []models.Images) [][]int {
	index := map[[3]int]int{}
	var groups [][]int
	for i, im := range imgs {
		key := [3]int{im.C, im.H, im.W}
		g, ok := index[key]
		if !ok {
			g = len(groups)
			index[key] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// stack copies the single images imgs[i] for i in group into one batch.
func stack(imgs []models.Images, group []int) models.Images {
	first := imgs[group[0]]
	b := models.NewImages(len(group), first.C, first.H, first.W)
	for j, i := range group {
		copy(b.At(j), imgs[i].Pix)
	}
	return b
}
