package batch

import (
	"strings"
	"testing"
)

func TestParseShard(t *testing.T) {
	s, err := ParseShard(" 2/4 ")
	if err != nil || s != (Shard{2, 4}) || s.String() != "2/4" || !s.Sharded() {
		t.Errorf("ParseShard(2/4) = %v, %v", s, err)
	}
	for _, bad := range []string{"4/4", "-1/4", "1/0", "1", "a/b", "1/2/3"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) accepted", bad)
		}
	}
	if (Shard{}).String() != "0/1" || (Shard{}).Sharded() {
		t.Error("the zero Shard is not the whole job")
	}
}

func TestShardsPartitionItems(t *testing.T) {
	items := make([]Item, 103)
	for i := range items {
		items[i] = Item{ID: string(rune('a' + i%26)), Index: i}
	}
	const n = 4
	count := make([]int, len(items))
	sizes := map[int]bool{}
	for i := range n {
		part := Shard{i, n}.Select(items)
		sizes[len(part)] = true
		for _, it := range part {
			count[it.Index]++
		}
	}
	for i, c := range count {
		if c != 1 {
			t.Errorf("item %d is in %d shards", i, c)
		}
	}
	if len(sizes) > 2 {
		t.Errorf("shard sizes %v differ by more than one", sizes)
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestShardFromEnv(t *testing.T) {
	cases := []struct {
		env     map[string]string
		want    Shard
		wantErr string
	}{
		{env: map[string]string{}, want: Shard{}},
		{env: map[string]string{"JOB_COMPLETION_INDEX": "3", "JOB_COMPLETIONS": "8"}, want: Shard{3, 8}},
		{env: map[string]string{"JOB_COMPLETION_INDEX": "3"}, wantErr: "JOB_COMPLETIONS is not"},
		{env: map[string]string{"JOB_COMPLETION_INDEX": "8", "JOB_COMPLETIONS": "8"}, wantErr: "index must be in"},
		{env: map[string]string{"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_MAX": "7"}, want: Shard{1, 4}},
		{env: map[string]string{"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, want: Shard{2, 4}},
		{env: map[string]string{"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "9", "SLURM_ARRAY_TASK_STEP": "4"}, wantErr: "not a contiguous range"},
		{env: map[string]string{"SLURM_ARRAY_TASK_ID": "2"}, wantErr: "SLURM_ARRAY_TASK_COUNT is not"},
		// Slurm wins over a stray Kubernetes variable: the array is what launched this task.
		{env: map[string]string{"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2", "JOB_COMPLETION_INDEX": "1"}, want: Shard{0, 2}},
	}
	for _, c := range cases {
		s, src, err := ShardFromEnv(env(c.env))
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%v: error %v, want %q", c.env, err, c.wantErr)
			}
			continue
		}
		if err != nil || s != c.want {
			t.Errorf("%v: got %v (%s), %v; want %v", c.env, s, src, err, c.want)
		}
		if (src == "") != (len(c.env) == 0) {
			t.Errorf("%v: source %q", c.env, src)
		}
	}
}
