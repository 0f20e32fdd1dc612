package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/rewards"
)

func (a *app) scoreCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "score --reward SPEC [--prompt TEXT] IMAGE...",
		Short: "Score image files with a reward and print every part of every score",
		Long: `Scores image files (PNG, JPEG, WebP, GIF, BMP, TIFF) with a reward spec, as steering would score a
particle, and prints one JSON object per image, in argument order: the total score and each part
(name, weight, score; for OCR also the text read). Files are read, scored and printed a batch at
a time (images of one size in one reward call), so any number of files fits in memory. A score
that is NaN or infinite prints as null. The reward key of the config file applies when --reward
is not given. docs/rewards.md lists every reward and option.

A file that cannot be read or scored (missing, not an image, truncated, larger than
--max-image-pixels) gets one warning line on stderr naming it, and the others are still scored;
score then exits with code 1 after a last line that counts them.`,
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
	addFlags(cmd.Flags(), append(append(pick(samplingSettings, "reward"), pick(generateSettings, "prompt")...), pick(batchSettings, "progress")...))
	return cmd
}

// scoredImage is one line of `fksteer score`'s output: the score and every part of it (the
// reward itself, or each term of a composite, with the text an OCR part read).
type scoredImage struct {
	Image string            `json:"image"`
	Score generation.Score  `json:"score"`
	Parts []generation.Part `json:"parts"`
}

func (a *app) score(cmd *cobra.Command, paths []string) error {
	spec := a.v.GetString("reward")
	if spec == "" {
		return usageError{errors.New("score needs a reward: --reward SPEC (see docs/rewards.md)")}
	}
	mode := a.v.GetString("progress")
	switch mode {
	case "auto", "bar", "log", "off":
	default:
		return usageError{fmt.Errorf("progress %q is not auto, bar, log or off", mode)}
	}
	opts, err := a.initRuntime()
	if err != nil {
		return err
	}
	r, err := rewards.Parse(spec, rewards.Env{ModelOptions: opts})
	if err != nil {
		var tooMany *rewards.TooManyPixelsError
		if errors.As(err, &tooMany) {
			return err // a reference image, as a scored image would be: exit 1
		}
		return usageError{err} // the spec is wrong: retrying cannot help
	}
	defer r.Close()
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	progress := newScoreProgress(mode, a.stderr, a.log, len(paths))
	defer progress.finish()
	var failed int
	var first string // the first failure's message
	err = rewards.ScoreFiles(cmd.Context(), r, a.v.GetString("prompt"), paths, func(f rewards.FileScore) error {
		progress.clear()
		defer progress.add(1)
		if f.Err != nil {
			// One warning line on stderr naming the file, as batch reports a failed item (the
			// run's one "fksteer:" line is the summary at the end).
			if failed++; failed == 1 {
				first = f.Err.Error()
			}
			a.log.Warn("image not scored", "image", f.Path, "err", f.Err.Error())
			return nil
		}
		return enc.Encode(scoredLine(f))
	})
	switch {
	case err != nil:
		return err
	case failed == len(paths):
		return fmt.Errorf("no image was scored: %s", first)
	case failed > 0:
		return fmt.Errorf("%d of %d images were not scored (first: %s); the scores of the other %d are printed",
			failed, len(paths), first, len(paths)-failed)
	}
	return nil
}

// scoredLine is a scored file's line of output.
func scoredLine(f rewards.FileScore) scoredImage {
	return scoredImage{Image: f.Path, Score: generation.Score(f.Score), Parts: generation.PartsOf(f.Parts)}
}

// scoreProgress shows how far score is, as batch's progress does: a bar with rate and ETA on
// a terminal (auto) or when asked (bar), a log line about every tenth of the files (log), or
// nothing (off, and auto off a terminal, as generate does: score's output is usually piped,
// and a few images take no time worth reporting). The bar goes to stderr and is cleared before
// every line, so stdout's JSON lines and stderr's warnings stay whole.
type scoreProgress struct {
	bar         *progressbar.ProgressBar
	log         *slog.Logger
	start       time.Time
	total, done int
	every       int
}

func newScoreProgress(mode string, w io.Writer, log *slog.Logger, total int) *scoreProgress {
	p := &scoreProgress{start: time.Now(), total: total, every: max(1, total/10)}
	switch {
	case mode == "bar" || mode == "auto" && isTerminal(w):
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("score"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("images"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
	case mode == "log":
		p.log = log
	}
	return p
}

// clear removes the bar before a line is written to the terminal; it is redrawn by add.
func (p *scoreProgress) clear() {
	if p.bar != nil {
		p.bar.Clear()
	}
}

func (p *scoreProgress) add(n int) {
	p.done += n
	switch {
	case p.bar != nil:
		p.bar.Add(n)
	case p.log != nil && (p.done%p.every == 0 || p.done == p.total):
		elapsed := time.Since(p.start)
		rate := float64(p.done) / elapsed.Seconds()
		eta := "?"
		if rate > 0 {
			eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
		}
		p.log.Info("progress", "scored", fmt.Sprintf("%d/%d", p.done, p.total), "rate", fmt.Sprintf("%.2f images/s", rate), "eta", eta)
	}
}

func (p *scoreProgress) finish() {
	if p.bar != nil {
		p.bar.Exit()
	}
}
