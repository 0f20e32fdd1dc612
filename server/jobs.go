package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"image"
	"image/png"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/disintegration/imaging"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/sampler"
)

// Job states.
const (
	Queued    = "queued"
	Running   = "running"
	Succeeded = "succeeded"
	Failed    = "failed"
	Cancelled = "cancelled"
)

// Job is one generation the server runs: a spec, its progress, its events and, once finished,
// its outputs. Its exported fields are what GET /v1/jobs/{id} answers; read them through
// Snapshot, which holds the lock.
type Job struct {
	ID       string          `json:"id"`
	Status   string          `json:"status"`
	Spec     generation.Spec `json:"spec"`
	Created  time.Time       `json:"created"`
	Started  *time.Time      `json:"started,omitempty"`
	Finished *time.Time      `json:"finished,omitempty"`
	Progress Progress        `json:"progress"`
	Error    string          `json:"error,omitempty"`
	Outputs  []Output        `json:"outputs,omitempty"`
	// PollURL is where the job's state is read.
	PollURL string `json:"poll_url"`

	mu      sync.Mutex
	events  []Event // every event so far, for subscribers that come late
	subs    map[chan Event]struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	cancels bool // cancelled by request, not by shutdown or a client going away
	images  [][]byte
	err     error // why a failed job failed
}

// Progress is where a running job is.
type Progress struct {
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// ESS is the first image's effective sample size at the last evaluation, BestReward the
	// highest reward seen at the last evaluation (NaN, sent as null, before any).
	ESS        *float64 `json:"ess,omitempty"`
	BestReward *float64 `json:"best_reward,omitempty"`
}

// Output is one finished image of a job; its PNG is served at URL.
type Output struct {
	Seed       uint64   `json:"seed"`
	Particle   int      `json:"particle"`
	Reward     *float64 `json:"reward,omitempty"`
	Parameters string   `json:"parameters"`
	URL        string   `json:"url"`
}

// Event is one Server-Sent Event of a job: a step, an evaluation with its particles, the end.
type Event struct {
	Type string `json:"type"` // step, evaluation, done
	Step int    `json:"step"`
	// At evaluations: per-row rewards, per-group ESS, which groups were resampled, each row's
	// parent slot, and small PNG previews of every particle (base64).
	Rewards   []*float64 `json:"rewards,omitempty"`
	ESS       []float64  `json:"ess,omitempty"`
	Resampled []bool     `json:"resampled,omitempty"`
	Parents   []int      `json:"parents,omitempty"`
	// Kept marks previews of states kept after a selection (sampler.StepInfo.Kept: svdd, beam,
	// dts), whose parents are slots of the previous evaluation; without it (FK) the previews
	// come before resampling and parents are what the next evaluation's slots were copied from.
	Kept     bool     `json:"kept,omitempty"`
	Previews []string `json:"previews,omitempty"`
	// At the end: the status and outputs.
	Status  string   `json:"status,omitempty"`
	Error   string   `json:"error,omitempty"`
	Outputs []Output `json:"outputs,omitempty"`
}

// previewSize is the side of the particle previews events carry: enough to see a particle,
// small enough that an event of 64 particles stays a few hundred kilobytes.
const previewSize = 64

func newJobID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Snapshot returns a copy of the job's state that is safe to encode.
func (j *Job) Snapshot() *Job {
	j.mu.Lock()
	defer j.mu.Unlock()
	c := &Job{ID: j.ID, Status: j.Status, Spec: j.Spec, Created: j.Created, Started: j.Started, Finished: j.Finished,
		Progress: j.Progress, Error: j.Error, Outputs: append([]Output(nil), j.Outputs...), PollURL: j.PollURL}
	return c
}

// Done is closed when the job has ended (succeeded, failed or cancelled).
func (j *Job) Done() <-chan struct{} { return j.done }

// publish records an event and sends it to every subscriber; a subscriber too slow to take it
// misses it rather than stalling the sampler (the job's state is always at its poll URL).
func (j *Job) publish(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
	for ch := range j.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// subscribe returns the events so far and a channel of the next ones, closed when the job ends.
func (j *Job) subscribe() ([]Event, chan Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	ch := make(chan Event, 64)
	past := append([]Event(nil), j.events...)
	select {
	case <-j.done:
		close(ch)
	default:
		if j.subs == nil {
			j.subs = map[chan Event]struct{}{}
		}
		j.subs[ch] = struct{}{}
	}
	return past, ch
}

func (j *Job) unsubscribe(ch chan Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.subs[ch]; ok {
		delete(j.subs, ch)
		close(ch)
	}
}

// observe turns the sampler's steps into progress and events.
func (j *Job) observe(si sampler.StepInfo) {
	j.mu.Lock()
	j.Progress.Step, j.Progress.Steps = si.Step+1, si.Steps
	if si.Evaluated {
		if len(si.ESS) > 0 {
			e := si.ESS[0]
			j.Progress.ESS = &e
		}
		best := math.Inf(-1)
		for _, r := range si.Rewards {
			best = math.Max(best, r)
		}
		if !math.IsInf(best, -1) {
			j.Progress.BestReward = &best
		}
	}
	j.mu.Unlock()
	e := Event{Type: "step", Step: si.Step}
	if si.Evaluated {
		e.Type = "evaluation"
		e.Rewards = finitePtrs(si.Rewards)
		// Copies: the sampler reuses StepInfo's slices after the observer returns, and events
		// are encoded later, on other goroutines.
		e.ESS, e.Resampled, e.Parents = slices.Clone(si.ESS), slices.Clone(si.Resampled), slices.Clone(si.Parents)
		e.Kept = si.Kept
		if e.Parents == nil { // nothing resampled: every particle is its own parent
			e.Parents = make([]int, len(si.Rewards))
			k := max(1, len(si.Rewards)/max(1, len(si.ESS)))
			for i := range e.Parents {
				e.Parents[i] = i % k
			}
		}
		for i := range si.Images.N {
			e.Previews = append(e.Previews, previewPNG(si.Images.Image(i)))
		}
	}
	j.publish(e)
}

func finitePtrs(v []float64) []*float64 {
	out := make([]*float64, len(v))
	for i, x := range v {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out[i] = &x
		}
	}
	return out
}

// previewPNG is a small PNG of img as base64.
func previewPNG(img image.Image) string {
	b := img.Bounds()
	if b.Dx() > previewSize || b.Dy() > previewSize {
		img = imaging.Fit(img, previewSize, previewSize, imaging.Box)
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img) // writing to memory cannot fail
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// errQueueFull is returned by submit when the queue holds as many jobs as it may.
var errQueueFull = errors.New("the queue is full")
