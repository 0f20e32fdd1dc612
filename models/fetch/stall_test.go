package fetch

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fksteer/fksteer/internal/lockfile"
)

// short is the stall timeout of these tests: long enough for a loopback server to answer, short
// enough for the tests to be quick. bound is the deadline that ends a test whose download would
// otherwise wait forever; reaching it is a failure, not the expected outcome.
const (
	short = 150 * time.Millisecond
	bound = 10 * time.Second
)

// wantStall checks that err is a stall of stage naming host, reached by the Client's own timeout
// and not by the test's deadline.
func wantStall(t *testing.T, ctx context.Context, err error, stage, host string) {
	t.Helper()
	if ctx.Err() != nil {
		t.Fatalf("the download ran into the test's %v deadline (error %v): it has no %s timeout", bound, err, stage)
	}
	var se *StallError
	if !errors.As(err, &se) {
		t.Fatalf("error %v, want a *StallError", err)
	}
	if se.Stage != stage || se.Host != host || se.After != short {
		t.Errorf("stall %+v, want stage %s, host %s, after %v", *se, stage, host, short)
	}
	if !strings.Contains(err.Error(), host) {
		t.Errorf("error %q does not name the host %s", err, host)
	}
}

// TestServerThatAcceptsAndNeverAnswers: a TCP server that accepts the connection and never
// writes a byte, the case that used to hang `models pull` forever.
func TestServerThatAcceptsAndNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }() // hold the connection open, silent
		}
	}()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	c := &Client{Attempts: 2, Backoff: noWait, ResponseTimeout: short}
	_, err = c.Fetch(ctx, File{URL: "http://" + ln.Addr().String() + "/model.onnx", Dest: filepath.Join(dir, "model.onnx")})
	wantStall(t, ctx, err, "response", ln.Addr().String())
	if !strings.Contains(err.Error(), "after 2 attempts") {
		t.Errorf("error %q does not say it tried twice", err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("a download that never started left %v", l)
	}
}

// TestHTTPServerThatNeverSendsHeaders: an HTTP server that reads the request and then waits.
func TestHTTPServerThatNeverSendsHeaders(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	c := &Client{Attempts: 1, ResponseTimeout: short}
	_, err := c.Fetch(ctx, File{URL: srv.URL + "/f", Dest: filepath.Join(dir, "f")})
	wantStall(t, ctx, err, "response", strings.TrimPrefix(srv.URL, "http://"))
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("files left: %v", l)
	}
}

// TestStallMidBody: the server sends part of the file and then nothing. The idle timeout ends
// the attempt, the bytes that arrived are kept, and the next attempt continues from them.
func TestStallMidBody(t *testing.T) {
	srv := newServer(t)
	data := payload(200_000, 9)
	sum := srv.put("/f", data)
	dir := t.TempDir()
	f := File{URL: srv.URL + "/f", Dest: filepath.Join(dir, "f"), SHA256: sum}
	host := strings.TrimPrefix(srv.URL, "http://")

	srv.cutAfter, srv.stall = 70_000, true
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	_, err := (&Client{Attempts: 1, IdleTimeout: short}).Fetch(ctx, f)
	wantStall(t, ctx, err, "body", host)
	if !strings.Contains(err.Error(), "sent no data for 150ms") || !strings.Contains(err.Error(), "run the same command again to resume") {
		t.Errorf("error %q does not say the host went silent and how to resume", err)
	}
	if n := fileSize(partPath(f.Dest)); n != 70_000 {
		t.Errorf("partial file holds %d bytes, want the 70000 that arrived", n)
	}
	if l := leftovers(t, dir); strings.Join(l, ",") != ".f.part,.f.part.json" {
		t.Errorf("files left %v, want the partial file and its metadata only", l)
	}

	// Within one call: the stalled attempt is retried and resumes where the bytes stopped.
	if err := os.Remove(partPath(f.Dest)); err != nil {
		t.Fatal(err)
	}
	srv.cutAfter, srv.stall = 70_000, true
	res, err := (&Client{Backoff: noWait, IdleTimeout: short}).Fetch(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.SHA256 != sum {
		t.Errorf("result %+v, want a resumed, verified download", res)
	}
	if got, _ := os.ReadFile(f.Dest); !bytes.Equal(got, data) {
		t.Error("the file differs from the served one")
	}
	if reqs := srv.requests(); reqs[len(reqs)-1] != "bytes=70000-" {
		t.Errorf("requests %q, want the last to resume at byte 70000", reqs)
	}
}

// TestTimeoutsApplyWithTheCallersHTTPClient: the timeouts are Fetch's own, not the transport's,
// so a caller's http.Client (a proxy, custom TLS) keeps them.
func TestTimeoutsApplyWithTheCallersHTTPClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	c := &Client{HTTP: &http.Client{Transport: &http.Transport{}}, Attempts: 1, ResponseTimeout: short}
	_, err := c.Fetch(ctx, File{URL: srv.URL + "/f", Dest: filepath.Join(t.TempDir(), "f")})
	wantStall(t, ctx, err, "response", strings.TrimPrefix(srv.URL, "http://"))
}

func TestDefaultTimeouts(t *testing.T) {
	var c Client
	if got := c.timeouts(); got != [3]time.Duration{DefaultTimeout, DefaultTimeout, DefaultTimeout} {
		t.Errorf("zero Client's timeouts %v", got)
	}
	c = Client{ConnectTimeout: 1, ResponseTimeout: 2, IdleTimeout: 3}
	if got := c.timeouts(); got != [3]time.Duration{1, 2, 3} {
		t.Errorf("set timeouts %v, want 1ns 2ns 3ns", got)
	}
}

// TestLockOfALiveDownloadIsRespected: a download in progress in another process (its lock held)
// refuses a second one, and the refused call leaves the other's lock file alone.
func TestLockOfALiveDownloadIsRespected(t *testing.T) {
	srv := newServer(t)
	sum := srv.put("/f", payload(1000, 10))
	dir := t.TempDir()
	f := File{URL: srv.URL + "/f", Dest: filepath.Join(dir, "f"), SHA256: sum}
	lockPath := partPath(f.Dest) + ".lock"
	other, err := lockfile.TryLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Client{}).Fetch(context.Background(), f)
	if err == nil || !strings.Contains(err.Error(), "another fksteer process is downloading") {
		t.Fatalf("second download while the first holds the lock: %v", err)
	}
	if _, err := os.Stat(lockPath); err != nil {
		t.Fatalf("the refused download removed the live download's lock: %v", err)
	}
	if _, err := lockfile.TryLock(lockPath); !errors.Is(err, lockfile.ErrLocked) {
		t.Fatalf("the live download's lock no longer excludes: %v", err)
	}
	other.Remove()
	if _, err := (&Client{}).Fetch(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t, dir); strings.Join(l, ",") != "f" {
		t.Errorf("files left %v, want f alone", l)
	}
}
