package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/sampler"
)

// newProgress returns how a batch shows its progress: a bar with rate and ETA when w is a
// terminal (mode auto) or when asked (bar), log lines otherwise (auto or log), or nothing (off).
func newProgress(mode string, w io.Writer, log *slog.Logger) batch.Progress {
	switch {
	case mode == "off":
		return nil
	case mode == "bar" || mode == "auto" && isTerminal(w):
		return &barProgress{w: w, log: log}
	}
	return &logProgress{log: log}
}

// isTerminal reports whether w is a terminal (a character device), where a redrawn bar makes
// sense; pipes, files and CI logs get log lines instead.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// barProgress draws a bar over the items still to do, so that its rate and ETA describe this
// run's work rather than items an earlier run finished.
type barProgress struct {
	w    io.Writer
	log  *slog.Logger
	bar  *progressbar.ProgressBar
	done int
}

func (p *barProgress) Start(total, done int) {
	desc := "batch"
	if done > 0 {
		desc = fmt.Sprintf("batch (%d of %d already done)", done, total)
	}
	p.bar = progressbar.NewOptions(total-done,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("items"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
	)
}

func (p *barProgress) Done(id string, _ int, err error) {
	if err != nil {
		// A line of its own above the bar, which redraws below it.
		p.bar.Clear()
		p.log.Warn("item failed", "id", id, "err", err)
	}
	p.bar.Add(1)
}

func (p *barProgress) Finish() { p.bar.Exit() }

// logProgress writes a log line about every tenth of the work (and every item at debug level),
// each with the count, the rate and the estimated time left.
type logProgress struct {
	log          *slog.Logger
	start        time.Time
	total, first int
	done, failed int
	every        int
}

func (p *logProgress) Start(total, done int) {
	p.start, p.total, p.first, p.done = time.Now(), total, done, done
	p.every = max(1, (total-done)/10)
	p.log.Info("batch started", "items", total, "already_done", done, "to_do", total-done)
}

func (p *logProgress) Done(id string, images int, err error) {
	p.done++
	if err != nil {
		p.failed++
		p.log.Warn("item failed", "id", id, "err", err)
	}
	p.log.Debug("item done", "id", id, "images", images)
	if n := p.done - p.first; n%p.every == 0 || p.done == p.total {
		elapsed := time.Since(p.start)
		rate := float64(n) / elapsed.Seconds()
		eta := "?"
		if rate > 0 {
			eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
		}
		p.log.Info("progress", "done", fmt.Sprintf("%d/%d", p.done, p.total), "failed", p.failed,
			"rate", fmt.Sprintf("%.2f items/s", rate), "eta", eta)
	}
}

func (p *logProgress) Finish() {}

// stepProgress shows how far generate has come, in denoising steps over every image: a bar
// with the count, the rate and the time left. generate is silent otherwise for as long as its
// steps take (seconds on small models, minutes on Stable Diffusion).
type stepProgress struct {
	bar  *progressbar.ProgressBar
	done bool
}

// newStepProgress returns generate's display of total steps on w: a bar when w is a terminal
// (mode auto) or when asked (bar), and nil, which shows nothing, when w is not a terminal or
// mode is off. Nothing is drawn where output is read by programs (pipes, files, --json, tests),
// and log mode has nothing to add to generate's own log lines, so it draws nothing either.
func newStepProgress(mode string, w io.Writer, total int) *stepProgress {
	if total <= 0 || !(mode == "bar" || mode == "auto" && isTerminal(w)) {
		return nil
	}
	return &stepProgress{bar: progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("generate"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("steps"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
	)}
}

// observer returns the sampler.Config.Observer that counts finished steps, or nil when there is
// no display. It only counts, so a run is the same with or without a display.
func (p *stepProgress) observer() func(sampler.StepInfo) {
	if p == nil {
		return nil
	}
	return func(sampler.StepInfo) { p.bar.Add(1) }
}

// hide clears the bar's line so that a line printed next starts clean; the next step redraws
// the bar below it.
func (p *stepProgress) hide() {
	if p != nil {
		p.bar.Clear()
	}
}

// clear draws the bar's final state and then removes it for good, so that what generate prints
// next starts on a clean line. Later calls do nothing.
func (p *stepProgress) clear() {
	if p != nil && !p.done {
		p.done = true
		p.bar.Finish()
		p.bar.Clear()
	}
}

// observers returns one observer that calls each non-nil observer in turn, or nil when there is
// none (a run with no observer does no observer work).
func observers(fs ...func(sampler.StepInfo)) func(sampler.StepInfo) {
	var live []func(sampler.StepInfo)
	for _, f := range fs {
		if f != nil {
			live = append(live, f)
		}
	}
	switch len(live) {
	case 0:
		return nil
	case 1:
		return live[0]
	}
	return func(si sampler.StepInfo) {
		for _, f := range live {
			f(si)
		}
	}
}
