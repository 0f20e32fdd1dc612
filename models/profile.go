package models

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// NodeStat is one graph node's share of an ONNX Runtime profile.
type NodeStat struct {
	Name string `json:"name"`
	Op   string `json:"op"`
	// Provider is the execution provider that ran the node, as ONNX Runtime names it
	// ("CPUExecutionProvider", "WebGpuExecutionProvider", ...).
	Provider string        `json:"provider"`
	Runs     int           `json:"runs"`
	Time     time.Duration `json:"time_ns"`
	// Median is the median time of one run: unlike Time/Runs it ignores a first run that
	// compiled the node's shaders.
	Median time.Duration `json:"median_ns"`
	// Bytes sums the node's output sizes over its runs: for a copy, the bytes it moved.
	Bytes int64 `json:"bytes"`
	durs  []time.Duration
}

// Profile is the per-node summary of one or more ONNX Runtime profile files.
type Profile struct {
	Nodes []NodeStat `json:"nodes"`
}

// ReadProfiles reads every profile written under prefix (what [WithProfiling] was given: each
// session adds -<n>, ONNX Runtime _<date>.json) and sums each node's kernel runs and time.
// Nodes of different sessions with the same name are summed together.
func ReadProfiles(prefix string) (Profile, error) {
	files, err := filepath.Glob(prefix + "-*_*.json")
	if err != nil {
		return Profile{}, err
	}
	if len(files) == 0 {
		return Profile{}, fmt.Errorf("no ONNX Runtime profile %s-*_*.json (profiles are written when the session closes)", prefix)
	}
	byName := map[string]*NodeStat{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return Profile{}, err
		}
		var events []struct {
			Cat  string `json:"cat"`
			Name string `json:"name"`
			Dur  int64  `json:"dur"` // microseconds
			Args struct {
				Op         string `json:"op_name"`
				Provider   string `json:"provider"`
				OutputSize string `json:"output_size"`
			} `json:"args"`
		}
		if err := json.Unmarshal(b, &events); err != nil {
			return Profile{}, fmt.Errorf("read ONNX Runtime profile %s: %w", f, err)
		}
		for _, e := range events {
			name, ok := strings.CutSuffix(e.Name, "_kernel_time")
			if e.Cat != "Node" || !ok {
				continue
			}
			n := byName[name]
			if n == nil {
				n = &NodeStat{Name: name, Op: e.Args.Op, Provider: e.Args.Provider}
				byName[name] = n
			}
			d := time.Duration(e.Dur) * time.Microsecond
			n.Runs++
			n.Time += d
			n.durs = append(n.durs, d)
			if b, err := strconv.ParseInt(e.Args.OutputSize, 10, 64); err == nil {
				n.Bytes += b
			}
		}
	}
	var p Profile
	for _, n := range byName {
		slices.Sort(n.durs)
		n.Median = n.durs[len(n.durs)/2]
		n.durs = nil
		p.Nodes = append(p.Nodes, *n)
	}
	slices.SortFunc(p.Nodes, func(a, b NodeStat) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Op, b.Op), cmp.Compare(a.Name, b.Name))
	})
	return p, nil
}

// IsCopy reports whether a node is a copy between host and device memory, which ONNX Runtime
// inserts where a node on one provider feeds a node on another.
func (n NodeStat) IsCopy() bool {
	return n.Op == "MemcpyFromHost" || n.Op == "MemcpyToHost"
}

// On returns the nodes that ran on a provider whose name starts with prefix (case-insensitive:
// "cpu", "WebGpu").
func (p Profile) On(prefix string) []NodeStat {
	var out []NodeStat
	for _, n := range p.Nodes {
		if strings.HasPrefix(strings.ToLower(n.Provider), strings.ToLower(prefix)) {
			out = append(out, n)
		}
	}
	return out
}

// OpCounts counts nodes by operator type, "Op×count" sorted by operator, for reports.
func OpCounts(nodes []NodeStat) string {
	counts := map[string]int{}
	for _, n := range nodes {
		counts[n.Op]++
	}
	ops := slices.Sorted(func(yield func(string) bool) {
		for op := range counts {
			if !yield(op) {
				return
			}
		}
	})
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = fmt.Sprintf("%s×%d", op, counts[op])
	}
	return strings.Join(parts, " ")
}

// Total sums the nodes' time; copies reports the host<->device copies' share of it.
func Total(nodes []NodeStat) (total, copies time.Duration) {
	for _, n := range nodes {
		total += n.Time
		if n.IsCopy() {
			copies += n.Time
		}
	}
	return total, copies
}
