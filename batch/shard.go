package batch

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard is one of Count disjoint parts of a job: the items whose Index % Count == Index. The zero
// Shard means the whole job (shard 0 of 1).
type Shard struct {
	Index, Count int
}

// Whole is the shard that holds every item.
var Whole = Shard{Index: 0, Count: 1}

func (s Shard) norm() Shard {
	if s.Count == 0 {
		return Whole
	}
	return s
}

// Validate checks 0 <= Index < Count.
func (s Shard) Validate() error {
	s = s.norm()
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: the index must be in 0..count-1 and the count positive", s.Index, s.Count)
	}
	return nil
}

// String formats the shard as "i/n".
func (s Shard) String() string {
	s = s.norm()
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// Sharded reports whether the shard is a strict part of the job.
func (s Shard) Sharded() bool { return s.norm().Count > 1 }

// Owns reports whether the item at position index belongs to this shard. Taking every Count-th
// item keeps shards within one item of each other in size, and depends only on the position, so
// every machine computes the same split from the same file.
func (s Shard) Owns(index int) bool {
	s = s.norm()
	return index%s.Count == s.Index
}

// Select returns the items the shard owns, in order.
func (s Shard) Select(items []Item) []Item {
	var out []Item
	for _, it := range items {
		if s.Owns(it.Index) {
			out = append(out, it)
		}
	}
	return out
}

// suffix distinguishes the files of shards that share an output folder: "" for the whole job,
// ".shard-2-of-4" for shard 2 of 4.
func (s Shard) suffix() string {
	if !s.Sharded() {
		return ""
	}
	s = s.norm()
	return fmt.Sprintf(".shard-%d-of-%d", s.Index, s.Count)
}

// ParseShard reads "i/n" (0-based index i of n shards).
func ParseShard(v string) (Shard, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(v), "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	n, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || n < 1 {
		return Shard{}, fmt.Errorf("shard %q is not INDEX/COUNT with a positive COUNT, e.g. 0/4 for the first of four (0-based)", v)
	}
	s := Shard{Index: i, Count: n}
	return s, s.Validate()
}

// Scheduler environment variables that [ShardFromEnv] reads.
const (
	// EnvK8sIndex is set by Kubernetes in every pod of an Indexed Job (0-based).
	EnvK8sIndex = "JOB_COMPLETION_INDEX"
	// EnvK8sCount is not set by Kubernetes (the pod cannot see the Job's spec.completions): the
	// Job's manifest sets it to the same number (see docs/kubernetes-indexed-job.yaml).
	EnvK8sCount = "JOB_COMPLETIONS"
	// Slurm job arrays set these in every task.
	EnvSlurmID    = "SLURM_ARRAY_TASK_ID"
	EnvSlurmCount = "SLURM_ARRAY_TASK_COUNT"
	EnvSlurmMin   = "SLURM_ARRAY_TASK_MIN"
	EnvSlurmMax   = "SLURM_ARRAY_TASK_MAX"
	EnvSlurmStep  = "SLURM_ARRAY_TASK_STEP"
)

// ShardFromEnv finds the shard a scheduler assigned to this process: a Slurm array task
// (index SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT) or a Kubernetes
// Indexed Job pod (JOB_COMPLETION_INDEX of JOB_COMPLETIONS), and says which variables it used.
// An empty source with a nil error means no scheduler assigned one. A half-configured
// environment is an error naming the fix, rather than a silent run over every item on every
// machine.
func ShardFromEnv(getenv func(string) string) (s Shard, source string, err error) {
	if id := getenv(EnvSlurmID); id != "" {
		return slurmShard(getenv)
	}
	if idx := getenv(EnvK8sIndex); idx != "" {
		i, err := strconv.Atoi(idx)
		if err != nil {
			return Shard{}, "", fmt.Errorf("%s=%q is not an integer", EnvK8sIndex, idx)
		}
		cnt := getenv(EnvK8sCount)
		if cnt == "" {
			return Shard{}, "", fmt.Errorf("%s=%d is set but %s is not: set %s in the Job's env to its spec.completions (see docs/kubernetes-indexed-job.yaml), or pass --shard %d/COUNT", EnvK8sIndex, i, EnvK8sCount, EnvK8sCount, i)
		}
		n, err := strconv.Atoi(cnt)
		if err != nil || n < 1 {
			return Shard{}, "", fmt.Errorf("%s=%q is not a positive integer", EnvK8sCount, cnt)
		}
		s := Shard{Index: i, Count: n}
		if err := s.Validate(); err != nil {
			return Shard{}, "", fmt.Errorf("from %s and %s: %w", EnvK8sIndex, EnvK8sCount, err)
		}
		return s, fmt.Sprintf("%s=%d, %s=%d", EnvK8sIndex, i, EnvK8sCount, n), nil
	}
	return Shard{}, "", nil
}

func slurmShard(getenv func(string) string) (Shard, string, error) {
	num := func(name string, def int) (int, error) {
		v := getenv(name)
		if v == "" {
			if def >= 0 {
				return def, nil
			}
			return 0, fmt.Errorf("%s is set but %s is not (is this an array job?); pass --shard INDEX/COUNT instead", EnvSlurmID, name)
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not an integer", name, v)
		}
		return n, nil
	}
	id, err := num(EnvSlurmID, -1)
	if err != nil {
		return Shard{}, "", err
	}
	count, err := num(EnvSlurmCount, -1)
	if err != nil {
		return Shard{}, "", err
	}
	lo, err := num(EnvSlurmMin, 0)
	if err != nil {
		return Shard{}, "", err
	}
	step, err := num(EnvSlurmStep, 1)
	if err != nil {
		return Shard{}, "", err
	}
	hi, err := num(EnvSlurmMax, lo+(count-1)*step)
	if err != nil {
		return Shard{}, "", err
	}
	// Task ids map to shards only for a contiguous range such as --array=0-7 or 1-8; a list like
	// --array=1,5,9 has no such map, and guessing one could skip or repeat items.
	if step != 1 || hi-lo+1 != count {
		return Shard{}, "", fmt.Errorf("the Slurm array (ids %d..%d, step %d, %d tasks) is not a contiguous range: submit with --array=0-%d, or pass --shard INDEX/COUNT", lo, hi, step, count, count-1)
	}
	s := Shard{Index: id - lo, Count: count}
	if err := s.Validate(); err != nil {
		return Shard{}, "", fmt.Errorf("from the Slurm array variables: %w", err)
	}
	return s, fmt.Sprintf("%s=%d of %s=%d (min %d)", EnvSlurmID, id, EnvSlurmCount, count, lo), nil
}
