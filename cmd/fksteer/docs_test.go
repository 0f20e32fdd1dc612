package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fksteer/fksteer/models/modeltest"
)

// k8sJob is the part of a Kubernetes Job the docs manifest must get right.
type k8sJob struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		CompletionMode   string `yaml:"completionMode"`
		Completions      int    `yaml:"completions"`
		PodFailurePolicy struct {
			Rules []struct {
				Action      string `yaml:"action"`
				OnExitCodes struct {
					Values []int `yaml:"values"`
				} `yaml:"onExitCodes"`
			} `yaml:"rules"`
		} `yaml:"podFailurePolicy"`
		Template struct {
			Spec struct {
				RestartPolicy string `yaml:"restartPolicy"`
				Containers    []struct {
					Command []string `yaml:"command"`
					Args    []string `yaml:"args"`
					Env     []struct {
						Name  string `yaml:"name"`
						Value string `yaml:"value"`
					} `yaml:"env"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// TestKubernetesIndexedJob reads docs/kubernetes-indexed-job.yaml and runs what it describes: every
// index of the batch Job with the environment Kubernetes would give it, then the merge Job, with
// the manifest's paths moved into a temporary folder.
func TestKubernetesIndexedJob(t *testing.T) {
	modeltest.Runtime(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "kubernetes-indexed-job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var jobs []k8sJob
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var j k8sJob
		if err := dec.Decode(&j); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	if len(jobs) != 2 || jobs[0].Kind != "Job" || jobs[1].Kind != "Job" {
		t.Fatalf("want two Jobs, got %+v", jobs)
	}
	work, merge := jobs[0], jobs[1]
	if work.Spec.CompletionMode != "Indexed" || work.Spec.Template.Spec.RestartPolicy != "Never" {
		t.Errorf("the batch Job is not an Indexed Job with restartPolicy Never: %+v", work.Spec)
	}
	rules := work.Spec.PodFailurePolicy.Rules
	if len(rules) != 1 || rules[0].Action != "FailIndex" || fmt.Sprint(rules[0].OnExitCodes.Values) != fmt.Sprint([]int{exitUsage}) {
		t.Errorf("the pod failure policy should fail an index on exit code %d only: %+v", exitUsage, rules)
	}

	dir := t.TempDir()
	writePrompts(t, filepath.Join(dir), 10)
	os.MkdirAll(filepath.Join(dir, "prompts"), 0o755)
	os.Rename(filepath.Join(dir, "prompts.txt"), filepath.Join(dir, "prompts", "prompts.txt"))
	move := strings.NewReplacer("/prompts/", dir+"/prompts/", "/data/", dir+"/data/")
	run := func(j k8sJob, env []string) {
		t.Helper()
		c := j.Spec.Template.Spec.Containers[0]
		if len(c.Command) != 1 || c.Command[0] != "fksteer" {
			t.Fatalf("%s: command %v", j.Metadata.Name, c.Command)
		}
		var args []string
		for _, a := range c.Args {
			args = append(args, move.Replace(a))
		}
		for _, e := range c.Env {
			if e.Name != "FKSTEER_ORT_LIB" { // the test's own library stays
				env = append(env, e.Name+"="+move.Replace(e.Value))
			}
		}
		cmd := cliCmd(dir, env, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", j.Metadata.Name, env, err, out)
		}
	}
	completions := ""
	for _, e := range work.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "JOB_COMPLETIONS" {
			completions = e.Value
		}
	}
	if completions != strconv.Itoa(work.Spec.Completions) {
		t.Fatalf("JOB_COMPLETIONS=%q must equal spec.completions (%d)", completions, work.Spec.Completions)
	}
	for i := range work.Spec.Completions {
		run(work, []string{fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i)})
	}
	run(merge, nil)
	checkResults(t, filepath.Join(dir, "data", "out"), 10)
}

// TestSlurmArrayScript runs docs/slurm-array.sh once per task of its #SBATCH --array range, with
// the variables Slurm sets, then merges as the script's header says.
func TestSlurmArrayScript(t *testing.T) {
	modeltest.Runtime(t)
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "docs", "slurm-array.sh"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^#SBATCH --array=(\d+)-(\d+)$`).FindStringSubmatch(string(text))
	if m == nil {
		t.Fatal("the script has no #SBATCH --array=LO-HI line")
	}
	lo, _ := strconv.Atoi(m[1])
	hi, _ := strconv.Atoi(m[2])
	dir := t.TempDir()
	writePrompts(t, dir, 9)
	out := filepath.Join(dir, "out")
	for id := lo; id <= hi; id++ {
		cmd := exec.Command("bash", script, "--steps", "6")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "FKSTEER_TEST_MAIN=1", "FKSTEER="+os.Args[0], "PROMPTS=prompts.txt", "OUT="+out,
			fmt.Sprintf("SLURM_ARRAY_TASK_ID=%d", id), fmt.Sprintf("SLURM_ARRAY_TASK_MIN=%d", lo),
			fmt.Sprintf("SLURM_ARRAY_TASK_MAX=%d", hi), fmt.Sprintf("SLURM_ARRAY_TASK_COUNT=%d", hi-lo+1))
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("task %d: %v\n%s", id, err, msg)
		}
	}
	if code, _, stderr := cli(t, dir, "batch", "merge", "--out", out, out); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	checkResults(t, out, 9)
}
