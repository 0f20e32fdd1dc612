package server

import (
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"time"
)

// latencyBuckets are the upper bounds (seconds) of the job latency histogram: from a glyphs
// image (tens of milliseconds) to a steered Stable Diffusion run on a CPU (minutes).
var latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// metrics are the server's counters, guarded by Server.mu.
type metrics struct {
	jobs     map[string]int // by final status
	rejected int            // 429s
	latency  []int          // per bucket, cumulative at render time
	latCount int
	latSum   float64
	nfe      float64 // denoiser rows evaluated by finished jobs
}

func (m *metrics) record(status string, d time.Duration, nfe float64) {
	if m.jobs == nil {
		m.jobs = map[string]int{}
		m.latency = make([]int, len(latencyBuckets))
	}
	m.jobs[status]++
	sec := d.Seconds()
	for i, b := range latencyBuckets {
		if sec <= b {
			m.latency[i]++
		}
	}
	m.latCount++
	m.latSum += sec
	m.nfe += nfe
}

// serveMetrics writes the counters in Prometheus' text format (version 0.0.4).
func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	m := s.metrics
	jobs := make(map[string]int, len(m.jobs))
	for k, v := range m.jobs {
		jobs[k] = v
	}
	latency := append([]int(nil), m.latency...)
	queued, running := len(s.queue), s.running
	s.mu.Unlock()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
	}
	gauge("fksteer_queue_depth", "Jobs waiting to run.", float64(queued))
	gauge("fksteer_jobs_running", "Jobs running now.", float64(running))
	gauge("fksteer_models_loaded", "Models and rewards open in the server's environment.", float64(s.cfg.Env.Open()))
	gauge("fksteer_go_memory_bytes", "Memory the Go runtime holds from the system (ONNX Runtime's own allocations come on top).", float64(mem.Sys))
	fmt.Fprintf(w, "# HELP fksteer_jobs_total Finished jobs by status.\n# TYPE fksteer_jobs_total counter\n")
	statuses := make([]string, 0, len(jobs))
	for k := range jobs {
		statuses = append(statuses, k)
	}
	sort.Strings(statuses)
	for _, k := range statuses {
		fmt.Fprintf(w, "fksteer_jobs_total{status=%q} %d\n", k, jobs[k])
	}
	fmt.Fprintf(w, "# HELP fksteer_rejected_total Requests refused because the queue was full.\n# TYPE fksteer_rejected_total counter\nfksteer_rejected_total %d\n", m.rejected)
	fmt.Fprintf(w, "# HELP fksteer_nfe_total Denoiser rows evaluated by finished jobs (a guidance pair counts 2); its rate is NFE per second.\n# TYPE fksteer_nfe_total counter\nfksteer_nfe_total %g\n", m.nfe)
	fmt.Fprintf(w, "# HELP fksteer_job_seconds Time from submission to the end of a job.\n# TYPE fksteer_job_seconds histogram\n")
	for i, b := range latencyBuckets {
		n := 0
		if latency != nil {
			n = latency[i]
		}
		fmt.Fprintf(w, "fksteer_job_seconds_bucket{le=\"%g\"} %d\n", b, n)
	}
	fmt.Fprintf(w, "fksteer_job_seconds_bucket{le=\"+Inf\"} %d\nfksteer_job_seconds_sum %g\nfksteer_job_seconds_count %d\n", m.latCount, m.latSum, m.latCount)
}
