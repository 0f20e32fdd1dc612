// Package fetch downloads model files into fksteer's cache, dependably: a download continues
// where a cut connection or a killed process left it (HTTP range requests into a .part file
// beside the target, guarded by the server's validator so a changed remote file restarts
// cleanly), is checked against a sha256 before it is renamed into place, and never leaves a
// partial or unverified file at the target path. It also holds the catalog of known model
// exports that `fksteer models pull` offers ([Catalog]).
package fetch

import (
	"github.com/fksteer/fksteer/internal/filehash"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/lockfile"
)

// File is one file to download.
type File struct {
	URL string
	// Dest is where the complete, verified file ends up.
	Dest string
	// SHA256 is the expected hex digest, or "" when it is not known in advance (see
	// [Verification]).
	SHA256 string
	// Size is the expected size in bytes, or 0 when unknown.
	Size int64
}

// Verification says what a file's sha256 was checked against.
type Verification string

const (
	// Pinned: the File's own SHA256 (the catalog's pinned checksum).
	Pinned Verification = "pinned"
	// Server: the sha256 the server stated for the file (the Hugging Face hub's X-Linked-Etag
	// header of LFS files). It catches corrupt and truncated downloads, not a dishonest host.
	Server Verification = "server"
	// Unverified: there was nothing to check against; the Result reports the computed digest.
	Unverified Verification = "unverified"
)

// Result describes a fetched file.
type Result struct {
	Path     string
	SHA256   string
	Bytes    int64
	Verified Verification
	// Cached: the file was already in place (and matched its pinned sha256); nothing was
	// downloaded. Resumed: the download continued a partial one.
	Cached, Resumed bool
}

// Client downloads files. The zero Client is ready to use.
type Client struct {
	// HTTP is the client used; nil means http.DefaultClient's transport. No overall timeout
	// applies (model files are large): a stalled connection is ended by the stage timeouts
	// below, whatever the client, or by cancelling the context.
	HTTP *http.Client
	// Header is added to every request, e.g. an Authorization header for gated models. Go's
	// client drops Authorization when a redirect leaves the original host.
	Header http.Header
	// Attempts is how many times one Fetch tries, continuing after each cut connection or
	// server error; 0 means 4.
	Attempts int
	// Backoff is the wait before attempt n (1-based, n >= 2); nil means 2^(n-2) seconds.
	Backoff func(n int) time.Duration
	// Progress, when set, is called as bytes arrive with the bytes on disk and the total size
	// (-1 when unknown).
	Progress func(f File, done, total int64)
	// ConnectTimeout bounds connecting to a host (DNS, TCP and TLS), ResponseTimeout the wait
	// for the response's headers once the request is sent, IdleTimeout the wait for the next
	// bytes of the body; 0 means [DefaultTimeout] for each. They hold on every request and
	// redirect whatever transport HTTP has, since Fetch enforces them itself. A host that
	// outwaits one ends the attempt with a [*StallError], which is retried like a cut
	// connection.
	ConnectTimeout, ResponseTimeout, IdleTimeout time.Duration
}

// DefaultTimeout is each stage's timeout when the Client sets none. A healthy host answers a
// request and keeps a transfer going within seconds, while a model file takes minutes in all, so
// the stages are bounded, not the whole download; a minute of silence is far past any hiccup
// that a wait would cure, and the partial file is kept for the retry.
const DefaultTimeout = time.Minute

// StallError reports a host that went silent: no connection, no response or no body bytes
// within the Client's timeout for that stage.
type StallError struct {
	// Host is the host:port that went silent (for a redirect, the host redirected to).
	Host string
	// Stage is "connect", "response" or "body".
	Stage string
	// After is the timeout that ran out.
	After time.Duration
}

// Error says which host went silent, at which stage, for how long.
func (e *StallError) Error() string {
	switch e.Stage {
	case "connect":
		return fmt.Sprintf("could not connect to %s within %v", e.Host, e.After)
	case "response":
		return fmt.Sprintf("%s accepted the request but sent no response within %v", e.Host, e.After)
	}
	return fmt.Sprintf("%s sent no data for %v", e.Host, e.After)
}

// timeouts returns the connect, response and idle timeouts in force.
func (c *Client) timeouts() [3]time.Duration {
	t := [3]time.Duration{c.ConnectTimeout, c.ResponseTimeout, c.IdleTimeout}
	for i := range t {
		if t[i] <= 0 {
			t[i] = DefaultTimeout
		}
	}
	return t
}

// watchdog ends a request whose host stays silent past the current stage's timeout: it cancels
// the request's context with a *StallError as the cause. Each sign of life re-arms it.
type watchdog struct {
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	timer  *time.Timer
	stall  StallError
}

// arm (re)starts the countdown for stage; host "" keeps the host already known.
func (w *watchdog) arm(stage, host string, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stall.Stage, w.stall.After = stage, d
	if host != "" {
		w.stall.Host = host
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.fire)
		return
	}
	// A timer that fired just before this Reset has already cancelled the request: the stage
	// did run out, so the stall it reports stands.
	w.timer.Reset(d)
}

func (w *watchdog) fire() {
	w.mu.Lock()
	e := w.stall
	w.mu.Unlock()
	w.cancel(&e)
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

// idleReader re-arms the watchdog's body countdown whenever bytes arrive.
type idleReader struct {
	r    io.Reader
	w    *watchdog
	idle time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.w.arm("body", "", r.idle)
	}
	return n, err
}

// displayHost drops the scheme's default port from host:port, as people write host names.
func displayHost(hostPort string) string {
	if h, port, err := net.SplitHostPort(hostPort); err == nil && (port == "443" || port == "80") {
		return h
	}
	return hostPort
}

// partMeta is stored beside a partial download: what it is a part of.
type partMeta struct {
	URL string `json:"url"`
	// Validator is the server's strong ETag or Last-Modified for the file, sent as If-Range so
	// that a changed remote file is sent whole instead of appended to the old part.
	Validator string `json:"validator,omitempty"`
	// ServerSHA256 is the sha256 the server stated for the file, if it did.
	ServerSHA256 string `json:"server_sha256,omitempty"`
	Total        int64  `json:"total,omitempty"`
}

func partPath(dest string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".part")
}

// Fetch downloads f.URL to f.Dest, resuming a partial download left by an earlier call.
//
// On success f.Dest holds the complete file, checked against f.SHA256 when set, else against the
// server's stated sha256 when it gives one (see [Verification]). On failure f.Dest is untouched:
// a cut connection keeps the partial file beside it (hidden, named .<name>.part) for the next
// call to continue; a checksum mismatch deletes it. An f.Dest that already exists and matches
// f.SHA256 is not downloaded again; one that does not match is replaced.
func (c *Client) Fetch(ctx context.Context, f File) (Result, error) {
	u, err := url.Parse(f.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Result{}, fmt.Errorf("download: %q is not an http(s) URL", f.URL)
	}
	if f.Dest == "" {
		return Result{}, errors.New("download: no destination")
	}
	want := strings.ToLower(f.SHA256)
	if want != "" && !isSHA256(want) {
		return Result{}, fmt.Errorf("download %s: %q is not a hex sha256", f.URL, f.SHA256)
	}
	if want != "" {
		if sum, n, err := filehash.SHA256(f.Dest); err == nil && sum == want {
			return Result{Path: f.Dest, SHA256: sum, Bytes: n, Verified: Pinned, Cached: true}, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(f.Dest), 0o755); err != nil {
		return Result{}, fmt.Errorf("download %s: create %s: %w", f.URL, filepath.Dir(f.Dest), err)
	}
	part := partPath(f.Dest)
	lock, err := lockfile.TryLock(part + ".lock")
	if err != nil {
		if errors.Is(err, lockfile.ErrLocked) {
			return Result{}, fmt.Errorf("download %s: another fksteer process is downloading %s; wait for it", f.URL, f.Dest)
		}
		return Result{}, fmt.Errorf("download %s: %w", f.URL, err)
	}
	// Removed on every return, so no lock file outlives a download; a process killed mid-way
	// leaves it, unlocked, for the next Fetch to take and remove.
	defer lock.Remove()

	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 4
	}
	res := Result{Path: f.Dest}
	var meta *partMeta
	for n := 1; ; n++ {
		var resumed bool
		meta, resumed, err = c.attempt(ctx, f, part)
		res.Resumed = res.Resumed || resumed
		if err == nil {
			break
		}
		var r retryable
		if ctx.Err() != nil || !errors.As(err, &r) || n >= attempts {
			if ctx.Err() != nil {
				return res, fmt.Errorf("download %s: %w (the partial file is kept: run again to resume)", f.URL, ctx.Err())
			}
			if errors.As(err, &r) {
				got := fileSize(part)
				return res, fmt.Errorf("download %s: %w, after %d attempts with %d bytes on disk; run the same command again to resume", f.URL, r.err, n, got)
			}
			return res, fmt.Errorf("download %s: %w", f.URL, err)
		}
		if err := c.wait(ctx, n+1); err != nil {
			return res, fmt.Errorf("download %s: %w (the partial file is kept: run again to resume)", f.URL, err)
		}
	}

	// Verify the whole file on disk, whatever mix of attempts and processes wrote it.
	sum, size, err := filehash.SHA256(part)
	if err != nil {
		return res, fmt.Errorf("download %s: %w", f.URL, err)
	}
	res.SHA256, res.Bytes = sum, size
	discard := func() { os.Remove(part); os.Remove(part + ".json") }
	switch {
	case f.Size > 0 && size != f.Size:
		discard()
		return res, fmt.Errorf("download %s: got %d bytes, expected %d; the partial file was removed: run again, and if it persists the catalog entry is out of date", f.URL, size, f.Size)
	case want != "":
		res.Verified = Pinned
	case meta.ServerSHA256 != "":
		want, res.Verified = meta.ServerSHA256, Server
	default:
		res.Verified = Unverified
	}
	if want != "" && sum != want {
		discard()
		return res, fmt.Errorf("download %s: checksum mismatch: got sha256 %s, expected %s (%s); the download was removed: run again to retry, and if it persists the host serves a different file than the catalog names", f.URL, sum, want, res.Verified)
	}
	if err := os.Rename(part, f.Dest); err != nil {
		return res, fmt.Errorf("download %s: %w", f.URL, err)
	}
	syncDir(filepath.Dir(f.Dest))
	os.Remove(part + ".json")
	return res, nil
}

// retryable marks errors after which another attempt may succeed: a cut connection, a server
// error, a rate limit.
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

var (
	contentRange = regexp.MustCompile(`^bytes (\d+)-(\d+)/(\d+|\*)$`)
	unsatisfied  = regexp.MustCompile(`^bytes \*/(\d+)$`)
)

// attempt makes one request and appends what arrives to part. It returns the part's metadata
// once part holds the whole file, and whether it continued a partial download.
func (c *Client) attempt(ctx context.Context, f File, part string) (*partMeta, bool, error) {
	offset := fileSize(part)
	meta := readMeta(part + ".json")
	if offset > 0 && (meta == nil || meta.URL != f.URL) {
		// A part of something else, or of unknown origin: start over.
		offset = 0
	}
	if meta == nil || meta.URL != f.URL {
		meta = &partMeta{URL: f.URL}
	}
	if offset > 0 && meta.Total > 0 && offset == meta.Total {
		return meta, false, nil // complete already: a previous process stopped before verifying
	}

	// The stage timeouts, enforced by cancelling this attempt's context; ctx itself is the
	// caller's, and its cancellation is told apart from a stall below.
	tm := c.timeouts()
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dog := &watchdog{cancel: cancel}
	defer dog.stop()
	if u, err := url.Parse(f.URL); err == nil {
		dog.arm("connect", displayHost(u.Host), tm[0])
	}
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		GetConn: func(hostPort string) { dog.arm("connect", displayHost(hostPort), tm[0]) },
		GotConn: func(httptrace.GotConnInfo) { dog.arm("response", "", tm[1]) },
	})
	// stalled returns the attempt's error: the caller's cancellation, else a stall, else err.
	stalled := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var se *StallError
		if errors.As(context.Cause(actx), &se) {
			return retryable{se}
		}
		return err
	}

	req, err := http.NewRequestWithContext(actx, http.MethodGet, f.URL, nil)
	if err != nil {
		return nil, false, err
	}
	for k, vs := range c.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		if meta.Validator != "" {
			req.Header.Set("If-Range", meta.Validator)
		}
	}
	// The Hugging Face hub states an LFS file's sha256 on the redirect to its storage, so look
	// at every response on the way.
	serverSHA := ""
	hc := c.httpClient()
	client := *hc
	client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if r.Response != nil {
			if s := statedSHA(r.Response.Header); s != "" {
				serverSHA = s
			}
		}
		if hc.CheckRedirect != nil {
			return hc.CheckRedirect(r, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, false, stalled(retryable{err})
	}
	defer resp.Body.Close()
	dog.arm("body", "", tm[2])
	if s := statedSHA(resp.Header); s != "" {
		serverSHA = s
	}

	var total int64 = -1
	switch resp.StatusCode {
	case http.StatusOK:
		offset = 0
		*meta = partMeta{URL: f.URL, Validator: validator(resp.Header), ServerSHA256: serverSHA, Total: resp.ContentLength}
		if resp.ContentLength >= 0 {
			total = resp.ContentLength
		}
	case http.StatusPartialContent:
		m := contentRange.FindStringSubmatch(resp.Header.Get("Content-Range"))
		if m == nil {
			return nil, false, fmt.Errorf("the server answered a range request with Content-Range %q", resp.Header.Get("Content-Range"))
		}
		start, _ := strconv.ParseInt(m[1], 10, 64)
		if start != offset {
			os.Remove(part) // the server resumed elsewhere: start over
			return nil, false, retryable{fmt.Errorf("the server resumed at byte %d instead of %d", start, offset)}
		}
		if m[3] != "*" {
			total, _ = strconv.ParseInt(m[3], 10, 64)
			meta.Total = total
		}
		if serverSHA != "" {
			meta.ServerSHA256 = serverSHA
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// The part is as long as the file or longer: complete, or of another file.
		if m := unsatisfied.FindStringSubmatch(resp.Header.Get("Content-Range")); m != nil {
			if n, _ := strconv.ParseInt(m[1], 10, 64); n == offset {
				meta.Total = n
				return meta, true, writeMeta(part+".json", meta)
			}
		}
		os.Remove(part)
		return nil, false, retryable{errors.New("the partial download is longer than the file (it changed on the server); starting over")}
	case http.StatusNotFound, http.StatusGone:
		return nil, false, fmt.Errorf("not found (HTTP %d): the catalog entry may be out of date, or the mirror lacks the file", resp.StatusCode)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, false, fmt.Errorf("access denied (HTTP %d): the model may be gated; accept its licence on its page and set HF_TOKEN", resp.StatusCode)
	default:
		err := fmt.Errorf("HTTP %d", resp.StatusCode)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
			return nil, false, retryable{err}
		}
		return nil, false, err
	}
	if f.Size > 0 && total >= 0 && total != f.Size {
		return nil, false, fmt.Errorf("the server's file is %d bytes, the catalog expects %d: the catalog entry is out of date", total, f.Size)
	}
	if err := writeMeta(part+".json", meta); err != nil {
		return nil, false, err
	}

	flags := os.O_WRONLY | os.O_CREATE
	if offset == 0 {
		flags |= os.O_TRUNC
	}
	out, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return nil, false, err
	}
	if _, err := out.Seek(offset, io.SeekStart); err != nil {
		out.Close()
		return nil, false, err
	}
	w := io.Writer(out)
	if c.Progress != nil {
		w = &progressWriter{w: out, done: offset, total: total, report: func(d, t int64) { c.Progress(f, d, t) }}
	}
	n, copyErr := io.Copy(w, &idleReader{r: resp.Body, w: dog, idle: tm[2]})
	// Keep what arrived, even after an error: it is where the next attempt continues.
	syncErr := out.Sync()
	closeErr := out.Close()
	resumed := offset > 0
	switch {
	case copyErr != nil:
		return nil, resumed, stalled(retryable{fmt.Errorf("connection cut: %w", copyErr)})
	case syncErr != nil:
		return nil, resumed, syncErr
	case closeErr != nil:
		return nil, resumed, closeErr
	case total >= 0 && offset+n != total:
		return nil, resumed, retryable{fmt.Errorf("connection ended after %d of %d bytes", offset+n, total)}
	}
	if total < 0 {
		meta.Total = offset + n
		if err := writeMeta(part+".json", meta); err != nil {
			return nil, resumed, err
		}
	}
	return meta, resumed, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{}
}

func (c *Client) wait(ctx context.Context, n int) error {
	d := time.Duration(1<<(n-2)) * time.Second
	if c.Backoff != nil {
		d = c.Backoff(n)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// statedSHA returns the sha256 a response header states for the file: the Hugging Face hub's
// X-Linked-Etag (an LFS file's sha256). Plain ETags are not digests of the content and are
// ignored.
func statedSHA(h http.Header) string {
	v := strings.ToLower(strings.Trim(strings.TrimPrefix(h.Get("X-Linked-Etag"), "W/"), `"`))
	if isSHA256(v) {
		return v
	}
	return ""
}

// validator returns the response's strong ETag or, failing that, its Last-Modified: what
// If-Range accepts.
func validator(h http.Header) string {
	if e := h.Get("ETag"); e != "" && !strings.HasPrefix(e, "W/") {
		return e
	}
	return h.Get("Last-Modified")
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{64}$`)

func isSHA256(s string) bool { return hexSHA.MatchString(s) }

func readMeta(path string) *partMeta {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var m partMeta
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return &m
}

func writeMeta(path string, m *partMeta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// syncDir makes a rename in dir durable; where a folder cannot be synced the rename is still
// atomic, only not yet on disk.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

type progressWriter struct {
	w           io.Writer
	done, total int64
	report      func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.report(p.done, p.total)
	return n, err
}
