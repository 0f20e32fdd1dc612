package main

// Limits checked before any work starts, so that a mistyped number is one clear message instead
// of a run that grows without end, sits silent or dies inside ONNX Runtime.

import (
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models"
)

const (
	// maxSteps bounds --steps. Discrete models are trained on 1000 noise levels, so past 1000
	// steps a schedule only repeats levels; published samplers for flow models use at most a few
	// hundred. Ten times 1000 leaves room to experiment, while 100 million steps would sit
	// silent for days (and an export records every step).
	maxSteps = 10_000
	// maxParticles bounds the particles (or samples) per image. Steering papers use K <= 64 and
	// best-of-N searches a few thousand; memory, checked separately, binds long before 10000
	// on any real model, and the bound keeps the estimate's arithmetic far from overflow.
	maxParticles = 10_000
)

// The limits in force, from the max-steps, max-particles, max-prompt-chars and memory-check
// settings (applyLimits); the constants above are their defaults.
var (
	limitSteps, limitParticles = maxSteps, maxParticles
	limitPromptChars           = maxPromptChars
	memoryChecked              = true
)

// maxPromptChars bounds a prompt's length in characters. Text encoders read 77 (CLIP) or 35
// (BLIP) tokens; a prompt of megabytes only costs memory and floods logs and PNG chunks.
const maxPromptChars = 10_000

// applyLimits reads the limit settings; a limit below 1 is a usage error.
func applyLimits(v settings) error {
	for _, l := range []struct {
		key string
		dst *int
	}{{"max-steps", &limitSteps}, {"max-particles", &limitParticles}, {"max-prompt-chars", &limitPromptChars}} {
		n := v.GetInt(l.key)
		if n < 1 {
			return usageError{fmt.Errorf("--%s %d: a limit must be at least 1", l.key, n)}
		}
		*l.dst = n
	}
	if n := v.GetInt("max-threads"); n < 0 {
		return usageError{fmt.Errorf("--max-threads %d is negative (0 = 4 × the cores)", n)}
	} else {
		models.MaxThreads = n
	}
	memoryChecked = v.GetBool("memory-check")
	return nil
}

// checkPromptText refuses a prompt fksteer cannot record faithfully or use: one with a NUL
// character (PNG text and most tools end strings there) or longer than the limit. what names it
// in the message ("--prompt", "item 000003 (line 4)").
func checkPromptText(text, what string) error {
	if strings.ContainsRune(text, 0) {
		return usageError{fmt.Errorf("%s contains a NUL character, which no text encoder reads and PNG text cannot record: remove it", what)}
	}
	if n := utf8.RuneCountInString(text); n > limitPromptChars {
		return usageError{fmt.Errorf("%s is %d characters, over the limit of %d (text encoders read the first 77 tokens): shorten it, or raise --max-prompt-chars", what, n, limitPromptChars)}
	}
	return nil
}

// availableMemory is the memory a run may use (the container's remaining allowance, else
// MemAvailable); tests replace it.
var availableMemory = batch.AvailableMemory

// checkThreads refuses more ONNX Runtime threads than [models.ThreadLimit] before the runtime
// starts; the option itself would refuse them only when the first model opens.
func checkThreads(n int) error {
	if limit := models.ThreadLimit(); n > limit {
		return usageError{fmt.Errorf("--threads %d is above the limit of %d (by default 4 × the %d cores here): ONNX Runtime gains nothing from more threads than cores, and each extra thread slows every model's start-up; lower --threads (0 lets ONNX Runtime choose), or raise --max-threads", n, limit, runtime.NumCPU())}
	}
	return nil
}

// checkCounts refuses step and particle counts past the hard limits; flag names the particles'
// flag (--particles, or export's --samples).
func checkCounts(steps, particles int, flag string) error {
	if steps > limitSteps {
		return usageError{fmt.Errorf("--steps %d is above the limit of %d steps: samplers gain nothing from so many (discrete models have 1000 noise levels); lower --steps, or raise --max-steps", steps, limitSteps)}
	}
	if particles > limitParticles {
		return usageError{fmt.Errorf("%s %d is above the limit of %d per image; lower %s, or raise --max-particles", flag, particles, limitParticles, flag)}
	}
	return nil
}

// checkMemory refuses a run whose estimate (times workers, for a batch) exceeds the memory
// available; lower names the flags that shrink it. Where the available memory cannot be read
// (not Linux) nothing is refused.
func checkMemory(est generation.Memory, workers int, lower string) error {
	avail, ok := availableMemory()
	need := est.Bytes * uint64(max(1, workers))
	if !ok || need <= avail || !memoryChecked {
		return nil
	}
	what := fmt.Sprintf("this run needs at least %s of memory (%d particle rows)", sizeString(need), est.Rows)
	if workers > 1 {
		what = fmt.Sprintf("%d workers need at least %s of memory (%s each, %d particle rows)", workers, sizeString(need), sizeString(est.Bytes), est.Rows)
		if est.Bytes <= avail {
			lower = "--workers (to " + strconv.FormatUint(avail/est.Bytes, 10) + " or fewer), or " + lower
		}
	}
	return usageError{fmt.Errorf("%s but %s is available: lower %s (or --memory-check=false to run anyway)", what, sizeString(avail), lower)}
}

// sizeString formats bytes in binary units, as memory limits are stated.
func sizeString(b uint64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", (b+(1<<20)-1)>>20)
}

// allocSize finds the size ONNX Runtime's allocator failed to get.
var allocSize = regexp.MustCompile(`requested buffer of size (\d+)`)

// allocError is ONNX Runtime's failure to allocate memory, restated: retrying the same run
// cannot help, so it is bad usage (exit 2) and stops a batch.
type allocError struct {
	msg string
	err error
}

func (e *allocError) Error() string { return e.msg }
func (e *allocError) Unwrap() error { return e.err }

// isAllocFailure reports whether err is, or wraps, an allocation failure restated by
// [allocFailure] (looking inside a usageError, which may not unwrap).
func isAllocFailure(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		err = ue.error
	}
	var ae *allocError
	return errors.As(err, &ae)
}

// allocFailure returns err unchanged unless it is ONNX Runtime failing to allocate memory ("Failed
// to allocate memory" from its arena, or a C++ bad_alloc); that becomes one message naming the
// flags to lower, wrapped as a usageError.
func allocFailure(err error, lower string) error {
	if err == nil || isAllocFailure(err) {
		return err
	}
	msg := err.Error()
	if !strings.Contains(msg, "Failed to allocate memory") && !strings.Contains(msg, "bad_alloc") {
		return err
	}
	what := "the memory it needed"
	if m := allocSize.FindStringSubmatch(msg); m != nil {
		if n, perr := strconv.ParseUint(m[1], 10, 64); perr == nil {
			what = sizeString(n) + " for one tensor"
		}
	}
	avail := ""
	if a, ok := availableMemory(); ok {
		avail = fmt.Sprintf(", with %s available", sizeString(a))
	}
	return usageError{&allocError{
		msg: fmt.Sprintf("the model ran out of memory: ONNX Runtime could not allocate %s%s; the run is too large for this machine: lower %s", what, avail, lower),
		err: err,
	}}
}
