package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/fksteer/fksteer/batch"
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
