package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/fksteer/fksteer/sampler"
)

// Print writes the settings the study ran in a header line, then one Markdown row per method
// and budget, then what its marks mean.
func (t *SteerTable) Print(w io.Writer) {
	cfg, s := t.Config, t.Config.Resampling
	digits := make([]string, len(t.Digits))
	for i, d := range t.Digits {
		digits[i] = strconv.Itoa(d)
	}
	overrides := t.Overrides.String()
	if overrides == "" {
		overrides = "none"
	}
	fmt.Fprintf(w, "%s, guidance %g, %s eta %g, %d steps: one base image is %d NFE, and each budget is a multiple of it. "+
		"Reward log p(digit) under the MNIST CNN; judged by its top class (classifier) and by a %d-NN reader over the MNIST test digits (reader). "+
		"Digits %s, %d runs each (%d per cell pooled). FK: %s potential, lambda %g, %s resampling every %d steps from %d to %d. "+
		"noise and random run on %s (deterministic), every other method on %s. Per-method settings: %s. Seed %d.\n\n",
		t.Model, cfg.Guidance, cfg.Rule, cfg.Eta, cfg.Steps, t.Unit, t.ReaderK, strings.Join(digits, ","), t.Runs, t.Runs*len(t.Digits),
		cfg.Potential, cfg.Lambda.Value, cfg.Resampler, s.Every, s.Start, s.End, DeterministicSampler, cfg.Rule, overrides, cfg.Seed)
	head := []string{"method", "budget", "NFE/image", "classifier (95% interval)", "reader (95% interval)"}
	for _, d := range digits {
		head = append(head, d+": classifier / reader")
	}
	head = append(head, "mean reward", "distinct roots", "pairwise distance", "wall/image", "hacking")
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	for _, r := range t.Rows {
		p := r.Pooled
		cols := []string{methodName(r.Method, r.Optimiser), fmt.Sprintf("%dx (%d)", r.Multiple, r.Budget), fmt.Sprintf("%.1f", p.NFE),
			rateString(p.Classifier), rateString(p.Reader)}
		for _, d := range r.Digits {
			cols = append(cols, fmt.Sprintf("%.1f / %.1f", 100*d.Classifier.P(), 100*d.Reader.P()))
		}
		cols = append(cols, fmt.Sprintf("%.3f", p.Reward), fmt.Sprintf("%.2f", p.Roots), number(p.Distance, "%.2f"),
			fmt.Sprintf("%.1f ms", float64(p.Wall)/float64(time.Millisecond)), t.hacking(r))
		fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
	}
	fmt.Fprintf(w, "\n(opt) marks the optimisers: they climb the reward rather than sample p(x0) exp(lambda r(x0)) / Z. "+
		"NFE/image is what the runs spent; the budget is what they were allowed. "+
		"Pairwise distance is the mean L2 distance between a digit's outputs (pixels in [0, 1]), averaged over the digits. "+
		"hacking: the classifier's and the reader's success rates differ by more than %d points, pooled or for one digit (the difference, classifier minus reader, follows).\n",
		HackingPoints)
}

// methodName is a method as the tables write it, "(opt)" marking an optimiser.
func methodName(m sampler.Method, optimiser bool) string {
	if optimiser {
		return string(m) + " (opt)"
	}
	return string(m)
}

// rateString writes a success rate with its count and 95 % Wilson interval.
func rateString(r Rate) string {
	lo, hi := r.Wilson()
	return fmt.Sprintf("%.1f%% (%d/%d) [%.1f, %.1f]", 100*r.P(), r.Successes, r.Runs, 100*lo, 100*hi)
}

// number formats v, or "-" when it is NaN.
func number(v float64, format string) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// hacking is a row's hacking mark: the pooled difference and each digit's beyond
// HackingPoints; "" when the row is not flagged.
func (t *SteerTable) hacking(r Row) string {
	if !r.Hacking() {
		return ""
	}
	parts := []string{fmt.Sprintf("pooled %+.0f", r.Pooled.Gap())}
	for i, d := range r.Digits {
		if d.Hacking() {
			parts = append(parts, fmt.Sprintf("%d: %+.0f", t.Digits[i], d.Gap()))
		}
	}
	return "**hacking** (" + strings.Join(parts, ", ") + ")"
}
