package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/server"
)

// loadSpec is request i of a load run: 20 distinct specs (base and FK) repeated.
func loadSpec(i int) generation.Spec {
	s := generation.Spec{Prompt: fmt.Sprintf(`"%c"`, 'A'+i%5), Steps: 4, Seed: uint64(i % 20)}
	if i%2 == 1 {
		s.Method, s.Particles, s.Reward = "fk", 3, "color:target=#cc2222"
	}
	return s
}

// load sends requests OpenAI requests from clients concurrent clients and returns each one's
// latency; every image is checked against want (by spec index).
func load(tb testing.TB, ts *httptest.Server, clients, requests int, want map[int][]byte) []time.Duration {
	tb.Helper()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	next := make(chan int)
	go func() {
		for i := range requests {
			next <- i
		}
		close(next)
	}()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s := loadSpec(i)
				extra, _ := json.Marshal(s)
				body, _ := json.Marshal(map[string]any{"prompt": s.Prompt, "fksteer": json.RawMessage(extra)})
				start := time.Now()
				resp, err := http.Post(ts.URL+"/v1/images/generations", "application/json", bytes.NewReader(body))
				if err != nil {
					tb.Error(err)
					return
				}
				var out struct {
					Data []struct {
						B64JSON string `json:"b64_json"`
					} `json:"data"`
				}
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				d := time.Since(start)
				if err != nil || resp.StatusCode != http.StatusOK || len(out.Data) != 1 {
					tb.Errorf("request %d: status %d, %v", i, resp.StatusCode, err)
					continue
				}
				img, err := base64.StdEncoding.DecodeString(out.Data[0].B64JSON)
				if err != nil || !bytes.Equal(img, want[i%20]) {
					tb.Errorf("request %d: the image differs from the library's for the same spec", i)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat
}

// expected is the library's PNG of each of the 20 distinct load specs: the CLI's for them too.
func expected(tb testing.TB, env *generation.Env) map[int][]byte {
	want := map[int][]byte{}
	for i := range 20 {
		want[i] = direct(tb, env, loadSpec(i))[0]
	}
	return want
}

// percentile is the p-th percentile of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// TestLoad: 32 concurrent clients send 200 requests on glyphs; every image is byte-identical
// to the library's for its spec, and afterwards the server holds no more goroutines and no
// more heap than before (beyond the finished jobs it keeps by design).
func TestLoad(t *testing.T) {
	ts, env := start(t, server.Config{Workers: 2, QueueSize: 64, KeepJobs: 8})
	want := expected(t, env)
	load(t, ts, 4, 20, want) // warm up: models open, connections made
	http.DefaultClient.CloseIdleConnections()
	before, heapBefore := settle()
	lat := load(t, ts, 32, 200, want)
	http.DefaultClient.CloseIdleConnections()
	after, heapAfter := settle()
	if after > before+2 {
		t.Errorf("goroutines grew from %d to %d over 200 requests", before, after)
	}
	if heapAfter > heapBefore+16<<20 {
		t.Errorf("heap grew from %d to %d bytes over 200 requests", heapBefore, heapAfter)
	}
	slices.Sort(lat)
	t.Logf("200 requests from 32 clients: latency p50 %v, p90 %v, p99 %v, max %v; goroutines %d -> %d, heap %.1f -> %.1f MiB",
		percentile(lat, .5), percentile(lat, .9), percentile(lat, .99), lat[len(lat)-1], before, after,
		float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20))
}

// settle waits until the goroutines of finished requests have exited, then returns the
// goroutine count and the live heap after a collection.
func settle() (int, uint64) {
	n := runtime.NumGoroutine()
	for range 100 {
		time.Sleep(10 * time.Millisecond) // letting exiting goroutines finish, not timing anything
		m := runtime.NumGoroutine()
		if m == n {
			break
		}
		n = m
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return n, ms.HeapAlloc
}

// BenchmarkLoad measures the server under 32 concurrent clients on glyphs (4 steps, base and FK
// alternating): requests per second and latency percentiles.
func BenchmarkLoad(b *testing.B) {
	ts, env := start(b, server.Config{Workers: 2, QueueSize: 64})
	want := expected(b, env)
	b.ResetTimer()
	var lat []time.Duration
	for range b.N {
		lat = append(lat, load(b, ts, 32, 200, want)...)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(percentile(lat, .5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(percentile(lat, .9).Milliseconds()), "p90-ms")
	b.ReportMetric(float64(percentile(lat, .99).Milliseconds()), "p99-ms")
}
