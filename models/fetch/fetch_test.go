package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// server serves files the test writes, on 127.0.0.1, with range support, and can cut the
// connection of the first response after a number of bytes.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	etag     map[string]string
	linked   map[string]string // X-Linked-Etag per path, stated on a redirect as the hub does
	cutAfter int               // bytes after which the next full or partial response is cut; 0 = never
	stall    bool              // after cutAfter bytes, wait for the client to go away instead of cutting
	ranges   []string          // Range headers received, "" for none
	noRange  bool              // ignore Range (answer 200 with the whole file)
}

func newServer(t *testing.T) *server {
	s := &server{files: map[string][]byte{}, etag: map[string]string{}, linked: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

func (s *server) put(path string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = data
	h := sha256.Sum256(data)
	s.etag[path] = fmt.Sprintf(`"%x"`, h[:8])
	return hex.EncodeToString(h[:])
}

func (s *server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if target, ok := strings.CutPrefix(r.URL.Path, "/resolve"); ok {
		// Like the hub: a redirect that states the LFS sha256, then the bytes from storage.
		if l := s.linked[target]; l != "" {
			w.Header().Set("X-Linked-Etag", `"`+l+`"`)
		}
		s.mu.Unlock()
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	data, ok := s.files[r.URL.Path]
	etag := s.etag[r.URL.Path]
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	cut, stall := s.cutAfter, s.stall
	s.cutAfter, s.stall = 0, false
	noRange := s.noRange
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if noRange {
		r.Header.Del("Range")
	}
	w.Header().Set("ETag", etag)
	if cut == 0 {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
		return
	}
	// Send the response the client asked for, but stop after cut bytes and drop the connection.
	start := 0
	if rg := r.Header.Get("Range"); rg != "" && r.Header.Get("If-Range") == etag {
		fmt.Sscanf(rg, "bytes=%d-", &start)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(len(data)-start))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
	}
	w.Write(data[start : start+cut])
	w.(http.Flusher).Flush()
	if stall {
		<-r.Context().Done()
		return
	}
	panic(http.ErrAbortHandler)
}

func (s *server) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func noWait(int) time.Duration { return 0 }

// leftovers lists the files in dir, the download's lock file included: Fetch removes it on
// every return.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestResumeAfterCutConnection(t *testing.T) {
	srv := newServer(t)
	data := payload(300_000, 1)
	sum := srv.put("/m/model.onnx", data)
	dir := t.TempDir()
	f := File{URL: srv.URL + "/m/model.onnx", Dest: filepath.Join(dir, "model.onnx"), SHA256: sum, Size: int64(len(data))}

	// One attempt only: the cut ends the call, leaving the first 120000 bytes beside the target.
	srv.cutAfter = 120_000
	c := &Client{Attempts: 1, Backoff: noWait}
	_, err := c.Fetch(context.Background(), f)
	if err == nil || !strings.Contains(err.Error(), "run the same command again to resume") {
		t.Fatalf("cut download: %v", err)
	}
	if _, err := os.Stat(f.Dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a partial file is at the target path")
	}
	if got := fileSize(partPath(f.Dest)); got != 120_000 {
		t.Fatalf("partial file holds %d bytes, want 120000", got)
	}

	// The next call continues from byte 120000 and verifies the whole file.
	res, err := c.Fetch(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Verified != Pinned || res.SHA256 != sum || res.Bytes != int64(len(data)) {
		t.Errorf("result %+v", res)
	}
	if got, _ := os.ReadFile(f.Dest); !bytes.Equal(got, data) {
		t.Fatal("resumed file differs from the served one")
	}
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0] != "" || reqs[1] != "bytes=120000-" {
		t.Errorf("requests %q, want a full request then bytes=120000-", reqs)
	}
	if l := leftovers(t, dir); len(l) != 1 || l[0] != "model.onnx" {
		t.Errorf("files left: %v", l)
	}

	// Present and matching: nothing is downloaded.
	res, err = c.Fetch(context.Background(), f)
	if err != nil || !res.Cached || len(srv.requests()) != 2 {
		t.Errorf("second fetch: %+v, %v, %d requests", res, err, len(srv.requests()))
	}
}

func TestRetriesWithinOneCallAfterACut(t *testing.T) {
	srv := newServer(t)
	data := payload(50_000, 2)
	sum := srv.put("/f", data)
	srv.cutAfter = 10_000
	f := File{URL: srv.URL + "/f", Dest: filepath.Join(t.TempDir(), "f"), SHA256: sum}
	res, err := (&Client{Backoff: noWait}).Fetch(context.Background(), f)
	if err != nil || !res.Resumed {
		t.Fatalf("fetch: %+v, %v", res, err)
	}
	if reqs := srv.requests(); len(reqs) != 2 || reqs[1] != "bytes=10000-" {
		t.Errorf("requests %q", reqs)
	}
}

func TestChecksumMismatchLeavesNothing(t *testing.T) {
	srv := newServer(t)
	data := payload(40_000, 3)
	srv.put("/f", data)
	dir := t.TempDir()
	wrong := strings.Repeat("ab", 32)
	f := File{URL: srv.URL + "/f", Dest: filepath.Join(dir, "f"), SHA256: wrong}
	_, err := (&Client{Backoff: noWait}).Fetch(context.Background(), f)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("error %v, want a checksum mismatch naming the expected sum", err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("files left after a mismatch: %v", l)
	}

	// The same after a resumed download: the mismatch is caught over the whole file.
	srv.cutAfter = 5_000
	_, err = (&Client{Attempts: 1}).Fetch(context.Background(), f)
	if err == nil || fileSize(partPath(f.Dest)) != 5_000 {
		t.Fatalf("cut: %v", err)
	}
	_, err = (&Client{}).Fetch(context.Background(), f)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("resumed mismatch: %v", err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("files left after a resumed mismatch: %v", l)
	}

	// A wrong size is rejected before anything is written.
	sum := sha256.Sum256(data)
	f = File{URL: srv.URL + "/f", Dest: filepath.Join(dir, "g"), SHA256: hex.EncodeToString(sum[:]), Size: 123}
	if _, err := (&Client{}).Fetch(context.Background(), f); err == nil || !strings.Contains(err.Error(), "catalog expects 123") {
		t.Errorf("wrong size: %v", err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("files left after a size mismatch: %v", l)
	}
}

func TestServerStatedChecksum(t *testing.T) {
	srv := newServer(t)
	data := payload(20_000, 4)
	sum := srv.put("/blob", data)
	dir := t.TempDir()

	srv.linked["/blob"] = sum
	res, err := (&Client{}).Fetch(context.Background(), File{URL: srv.URL + "/resolve/blob", Dest: filepath.Join(dir, "a")})
	if err != nil || res.Verified != Server || res.SHA256 != sum {
		t.Fatalf("hub-stated sum: %+v, %v", res, err)
	}
	srv.linked["/blob"] = strings.Repeat("0", 64)
	_, err = (&Client{}).Fetch(context.Background(), File{URL: srv.URL + "/resolve/blob", Dest: filepath.Join(dir, "b")})
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "server") {
		t.Fatalf("wrong hub-stated sum: %v", err)
	}
	delete(srv.linked, "/blob")
	res, err = (&Client{}).Fetch(context.Background(), File{URL: srv.URL + "/resolve/blob", Dest: filepath.Join(dir, "c")})
	if err != nil || res.Verified != Unverified || res.SHA256 != sum {
		t.Fatalf("no sum to check: %+v, %v", res, err)
	}
	if l := leftovers(t, dir); strings.Join(l, ",") != "a,c" {
		t.Errorf("files %v, want a and c", l)
	}
}

func TestRemoteChangeRestartsInsteadOfMixing(t *testing.T) {
	srv := newServer(t)
	old := payload(30_000, 5)
	srv.put("/f", old)
	dir := t.TempDir()
	f := File{URL: srv.URL + "/f", Dest: filepath.Join(dir, "f")}
	srv.cutAfter = 10_000
	if _, err := (&Client{Attempts: 1}).Fetch(context.Background(), f); err == nil {
		t.Fatal("cut download succeeded")
	}
	// The file changes on the server: its ETag no longer matches If-Range, so the server sends
	// the new file whole and the old part is discarded.
	fresh := payload(25_000, 6)
	sum := srv.put("/f", fresh)
	res, err := (&Client{}).Fetch(context.Background(), f)
	if err != nil || res.SHA256 != sum || res.Resumed {
		t.Fatalf("after a change: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(f.Dest); !bytes.Equal(got, fresh) {
		t.Error("the result mixes the old and the new file")
	}
}

func TestServerWithoutRangeSupport(t *testing.T) {
	srv := newServer(t)
	data := payload(30_000, 7)
	sum := srv.put("/f", data)
	srv.noRange = true
	srv.cutAfter = 10_000
	f := File{URL: srv.URL + "/f", Dest: filepath.Join(t.TempDir(), "f"), SHA256: sum}
	res, err := (&Client{Backoff: noWait}).Fetch(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f.Dest); !bytes.Equal(got, data) || res.SHA256 != sum {
		t.Error("download through a server that ignores Range is wrong")
	}
}

func TestErrorsNameTheProblem(t *testing.T) {
	srv := newServer(t)
	dir := t.TempDir()
	_, err := (&Client{}).Fetch(context.Background(), File{URL: srv.URL + "/missing", Dest: filepath.Join(dir, "x")})
	if err == nil || !strings.Contains(err.Error(), "not found (HTTP 404)") || !strings.Contains(err.Error(), srv.URL+"/missing") {
		t.Errorf("404: %v", err)
	}
	for _, bad := range []File{{URL: "ftp://x/y", Dest: "d"}, {URL: srv.URL + "/f", Dest: ""}, {URL: srv.URL + "/f", Dest: "d", SHA256: "xyz"}} {
		if _, err := (&Client{}).Fetch(context.Background(), bad); err == nil {
			t.Errorf("Fetch(%+v) accepted", bad)
		}
	}
	// Nothing listens on a closed server's port: the error says how to resume.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	_, err = (&Client{Attempts: 2, Backoff: noWait}).Fetch(context.Background(), File{URL: closed.URL + "/f", Dest: filepath.Join(dir, "y")})
	if err == nil || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Errorf("unreachable: %v", err)
	}
}

func TestCancelKeepsThePartialFile(t *testing.T) {
	srv := newServer(t)
	data := payload(200_000, 8)
	sum := srv.put("/f", data)
	dir := t.TempDir()
	f := File{URL: srv.URL + "/f", Dest: filepath.Join(dir, "f"), SHA256: sum}
	// The server sends 60000 bytes and then nothing: only the cancellation ends the download.
	srv.cutAfter, srv.stall = 60_000, true
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{Progress: func(_ File, done, _ int64) {
		if done >= 60_000 {
			cancel()
		}
	}}
	_, err := c.Fetch(ctx, f)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if _, err := os.Stat(f.Dest); !errors.Is(err, os.ErrNotExist) {
		t.Error("a cancelled download left a file at the target")
	}
	if n := fileSize(partPath(f.Dest)); n != 60_000 {
		t.Errorf("partial file holds %d bytes, want 60000", n)
	}
	if _, err := (&Client{}).Fetch(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if reqs := srv.requests(); reqs[len(reqs)-1] != "bytes=60000-" {
		t.Errorf("the download after a cancel did not resume at byte 60000: %q", reqs)
	}
}
