package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"image"
	"image/png"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fksteer/fksteer/internal/lockfile"
	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/internal/testimages"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/synth"
)

// The bad-input suite: what a hostile or careless user types, one row each, across every
// subcommand. Every row runs the CLI as a child process and must end with the exit code of
// README's table, one "fksteer: " line that names the problem (the row's wants), no Go stack
// trace, no more than badInputMemory of resident memory, within badInputTime, and without
// changing any earlier output (a finished generate run and a finished batch sit beside every
// row, and every row that writes aims at them).
const (
	badInputMemory = 1536 << 20 // bytes of peak RSS; a healthy run of these models needs ~300 MB
	badInputTime   = 90 * time.Second
)

// badInput is one row. Args may use {dir} (the row's own empty folder), {prev} (a finished
// generate output), {batch} (a finished batch folder), {mnist} (the MNIST DiT manifest), {clf}
// (the MNIST classifier) and {files} (a folder of prepared bad files, see writeBadFiles).
type badInput struct {
	name  string
	args  []string
	env   []string
	code  int
	wants []string
	// hold is a lock file the test holds while the row runs: another run at work there.
	hold string
}

func TestBadInputs(t *testing.T) {
	if raceEnabled {
		t.Skip("runs in make test's pass without -race (see raceEnabled)")
	}
	modeltest.Runtime(t)
	mnist := filepath.Join(testenv.ModuleRoot(), "examples", "mnist-dit-rf.yaml")
	testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	clf := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	root := t.TempDir()
	files := filepath.Join(root, "files")
	writeBadFiles(t, files, mnist)
	prev := filepath.Join(root, "prev")
	if code, _, stderr := cli(t, "", "generate", "--prompt", `"P"`, "--num-images", "2", "--steps", "5", "--seed", "100", "--out", prev, "--provider", "cpu"); code != 0 {
		t.Fatalf("fixture generate: exit %d\n%s", code, stderr)
	}
	batchDir := filepath.Join(root, "batch")
	if code, _, stderr := cli(t, "", "batch", "--prompts", filepath.Join(files, "prompts.txt"), "--steps", "5", "--out", batchDir, "--progress", "off", "--provider", "cpu"); code != 0 {
		t.Fatalf("fixture batch: exit %d\n%s", code, stderr)
	}
	rows := badInputRows()
	if len(rows) < 100 {
		t.Errorf("the suite has %d rows; it promises at least 100", len(rows))
	}
	for i, r := range rows {
		// Each row is compared with the state just before it, so one row that damages an
		// earlier output fails alone.
		before := snapshot(t, root)
		t.Run(r.name, func(t *testing.T) {
			dir := filepath.Join(root, "rows", filepathSafe(r.name))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			repl := strings.NewReplacer("{dir}", dir, "{prev}", prev, "{batch}", batchDir, "{mnist}", mnist, "{clf}", clf, "{files}", files)
			args := make([]string, len(r.args))
			for j, a := range r.args {
				args[j] = repl.Replace(a)
			}
			if r.hold != "" {
				l, err := lockfile.TryLock(repl.Replace(r.hold))
				if err != nil {
					t.Fatal(err)
				}
				defer l.Unlock()
			}
			ctx, cancel := context.WithTimeout(context.Background(), badInputTime)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], args...)
			cmd.Dir = dir
			cmd.Env = append(append(os.Environ(), "FKSTEER_TEST_MAIN=1"), r.env...)
			for j, e := range cmd.Env {
				cmd.Env[j] = repl.Replace(e)
			}
			out, _ := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("row %d still running after %v (a hang); output:\n%s", i, badInputTime, out)
			}
			st := cmd.ProcessState
			if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				t.Fatalf("killed by %v; output:\n%s", ws.Signal(), out)
			}
			if ru, ok := st.SysUsage().(*syscall.Rusage); ok && ru.Maxrss*1024 > badInputMemory {
				t.Errorf("peak memory %d MB, over the %d MB bound", ru.Maxrss/1024, badInputMemory>>20)
			}
			text := string(out)
			if strings.Contains(text, "goroutine ") || strings.Contains(text, "panic:") || strings.Contains(text, "runtime error") {
				t.Errorf("a Go stack trace or panic:\n%s", text)
			}
			var errLines []string
			for _, l := range strings.Split(text, "\n") {
				if strings.HasPrefix(l, "fksteer: ") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 {
				t.Errorf("%d error lines, want exactly one; output:\n%s", len(errLines), text)
			}
			if st.ExitCode() != r.code {
				t.Errorf("exit code %d, want %d; output:\n%s", st.ExitCode(), r.code, text)
			}
			if len(errLines) > 0 {
				for _, w := range r.wants {
					if !strings.Contains(errLines[len(errLines)-1], repl.Replace(w)) {
						t.Errorf("error %q does not say %q", errLines[len(errLines)-1], w)
					}
				}
			}
			if after := snapshot(t, root); !sameOutputs(before, after) {
				t.Errorf("earlier outputs changed:\n%s", diffOutputs(before, after))
			}
		})
	}
}

func badInputRows() []badInput {
	gen := func(args ...string) []string {
		return append([]string{"generate", "--out", "{dir}/out", "--steps", "3", "--provider", "cpu"}, args...)
	}
	batch := func(args ...string) []string {
		return append([]string{"batch", "--out", "{dir}/out", "--steps", "3", "--progress", "off", "--provider", "cpu"}, args...)
	}
	export := func(args ...string) []string {
		return append([]string{"export", "--out", "{dir}/out", "--steps", "3", "--provider", "cpu"}, args...)
	}
	score := func(args ...string) []string { return append([]string{"score", "--provider", "cpu"}, args...) }
	fk := func(reward string) []string {
		return gen("--method", "fk", "--particles", "2", "--reward", reward)
	}
	return []badInput{
		// Flags and usage.
		{name: "unknown flag", args: gen("--stpes", "3"), code: exitUsage, wants: []string{"unknown flag", "--stpes"}},
		{name: "unknown subcommand", args: []string{"genrate"}, code: exitUsage, wants: []string{"genrate"}},
		{name: "steps not a number", args: gen("--steps", "ten"), code: exitUsage, wants: []string{"ten"}},
		{name: "seed negative", args: gen("--seed", "-1"), code: exitUsage, wants: []string{"-1"}},
		{name: "unknown provider", args: gen("--provider", "tpu"), code: exitUsage, wants: []string{"tpu", "webgpu"}},
		{name: "provider option for the cpu", args: gen("--provider-option", "preferredLayout=NHWC"), code: exitUsage, wants: []string{"takes no provider options"}},
		{name: "provider option not key=value", args: gen("--provider-option", "NHWC"), code: exitUsage, wants: []string{"key=value"}},
		{name: "misspelt webgpu option", args: gen("--provider", "webgpu", "--provider-option", "preferredlayout=NHWC"), code: exitUsage, wants: []string{"preferredLayout"}},
		{name: "unknown method", args: gen("--method", "mcts"), code: exitUsage, wants: []string{"mcts"}},
		{name: "unknown sampler", args: gen("--sampler", "heun"), code: exitUsage, wants: []string{"heun"}},
		{name: "unknown potential", args: gen("--method", "fk", "--particles", "2", "--reward", "color:target=#cc2222", "--potential", "min"), code: exitUsage, wants: []string{"min"}},
		{name: "unknown resampler", args: gen("--method", "fk", "--particles", "2", "--reward", "color:target=#cc2222", "--resampler", "greedy"), code: exitUsage, wants: []string{"greedy"}},
		{name: "unknown select", args: gen("--select", "worst"), code: exitUsage, wants: []string{"worst"}},
		{name: "unknown lambda ramp", args: gen("--lambda-ramp", "cubic"), code: exitUsage, wants: []string{"cubic"}},
		{name: "unknown log level", args: gen("--log-level", "loud"), code: exitUsage, wants: []string{"loud"}},
		{name: "fk without a reward", args: gen("--method", "fk", "--particles", "2"), code: exitUsage, wants: []string{"reward"}},
		{name: "fk with a deterministic sampler", args: gen("--method", "fk", "--particles", "2", "--reward", "color:target=#cc2222", "--sampler", "ddim", "--eta", "0"), code: exitUsage, wants: []string{"stochastic"}},
		{name: "tokenize with no text", args: []string{"tokenize", "--tokenizer", "{dir}"}, code: exitUsage, wants: []string{"at least one text"}},
		{name: "bench steer zero runs", args: []string{"bench", "steer", "--model", "{mnist}", "--classifier", "{clf}", "--runs", "0"}, code: exitUsage, wants: []string{"runs"}},
		{name: "bench providers auto", args: []string{"bench", "providers", "--providers", "auto"}, code: exitUsage, wants: []string{"auto"}},
		{name: "bench providers zero K", args: []string{"bench", "providers", "--ks", "0"}, code: exitUsage, wants: []string{"--ks"}},

		// Numbers out of range.
		{name: "serve on every address without a key", args: []string{"serve", "--listen", "0.0.0.0:7860"}, code: exitUsage, wants: []string{"API key", "127.0.0.1"}},
		{name: "serve on a bad address", args: []string{"serve", "--listen", "7860"}, code: exitUsage, wants: []string{"--listen", "host:port"}},
		{name: "serve with no queue", args: []string{"serve", "--queue-size", "0"}, code: exitUsage, wants: []string{"--queue-size"}},
		{name: "serve with negative model memory", args: []string{"serve", "--model-memory", "-1"}, code: exitUsage, wants: []string{"--model-memory"}},
		{name: "zero steps", args: gen("--steps", "0"), code: exitUsage, wants: []string{"steps"}},
		{name: "negative steps", args: gen("--steps", "-3"), code: exitUsage, wants: []string{"steps"}},
		{name: "steps beyond the limit", args: gen("--steps", "100000000"), code: exitUsage, wants: []string{"steps"}},
		{name: "zero particles", args: gen("--particles", "0"), code: exitUsage, wants: []string{"particles"}},
		{name: "negative particles", args: gen("--particles", "-2"), code: exitUsage, wants: []string{"particles"}},
		{name: "particles past memory", args: gen("--particles", "100000", "--method", "bon", "--reward", "color:target=#cc2222"), code: exitUsage, wants: []string{"--particles"}},
		{name: "zero images", args: gen("--num-images", "0"), code: exitUsage, wants: []string{"num-images"}},
		{name: "zero batch size", args: gen("--batch-size", "0"), code: exitUsage, wants: []string{"batch-size"}},
		{name: "negative eta", args: gen("--eta", "-1"), code: exitUsage, wants: []string{"eta"}},
		{name: "eta NaN", args: gen("--eta", "NaN"), code: exitUsage, wants: []string{"eta"}},
		{name: "guidance NaN", args: gen("--guidance", "NaN"), code: exitUsage, wants: []string{"guidance"}},
		{name: "guidance Inf", args: gen("--guidance", "Inf"), code: exitUsage, wants: []string{"guidance"}},
		{name: "lambda NaN", args: append(fk("color:target=#cc2222"), "--lambda", "NaN"), code: exitUsage, wants: []string{"lambda"}},
		{name: "resample-every negative", args: append(fk("color:target=#cc2222"), "--resample-every", "-1"), code: exitUsage, wants: []string{"resample-every"}},
		{name: "resample-end beyond the steps", args: append(fk("color:target=#cc2222"), "--resample-end", "999"), code: exitUsage, wants: []string{"resample-end"}},
		{name: "ess threshold above 1", args: append(fk("color:target=#cc2222"), "--ess-threshold", "2"), code: exitUsage, wants: []string{"ess-threshold"}},
		{name: "strength above 1", args: gen("--model", "{files}/sd", "--init-image", "{files}/good.png", "--strength", "2"), code: exitUsage, wants: []string{"strength"}},
		{name: "strength NaN", args: gen("--model", "{files}/sd", "--init-image", "{files}/good.png", "--strength", "NaN"), code: exitUsage, wants: []string{"strength"}},
		{name: "class beyond the model's", args: gen("--model", "{mnist}", "--class", "99"), code: exitUsage, wants: []string{"class"}},
		{name: "class on a model without classes", args: gen("--class", "3"), code: exitUsage, wants: []string{"class"}},
		{name: "seed overflows with several images", args: gen("--seed", "18446744073709551615", "--num-images", "3"), code: exitUsage, wants: []string{"seed"}},
		{name: "threads absurd", args: gen("--threads", "100000"), code: exitUsage, wants: []string{"threads"}},
		{name: "prompt with a NUL (from a config file)", args: gen("--config", "{files}/nul-config.yaml"), code: exitUsage, wants: []string{"NUL"}},
		{name: "prompt over the length limit", args: gen("--prompt", strings.Repeat("a", 10001)), code: exitUsage, wants: []string{"--max-prompt-chars"}},
		{name: "negative prompt over a lowered limit", args: gen("--max-prompt-chars", "5", "--negative-prompt", "blurry and dark"), code: exitUsage, wants: []string{"--negative-prompt", "--max-prompt-chars"}},
		{name: "batch item with a NUL", args: batch("--prompts", "{files}/nul.txt"), code: exitUsage, wants: []string{"line 2", "NUL"}},
		{name: "export prompt with a NUL", args: export("--mode", "ddpo", "--reward", "color:target=#cc2222", "--prompts", "{files}/nul.txt"), code: exitUsage, wants: []string{"line 2", "NUL"}},
		{name: "limit below 1", args: gen("--max-steps", "0"), code: exitUsage, wants: []string{"--max-steps"}},
		{name: "thread limit negative", args: gen("--max-threads", "-2"), code: exitUsage, wants: []string{"--max-threads"}},
		{name: "steps over a lowered limit", args: gen("--max-steps", "2"), code: exitUsage, wants: []string{"--max-steps"}},
		{name: "threads negative", args: gen("--threads", "-1"), code: exitUsage, wants: []string{"thread"}},
		{name: "workers negative", args: batch("--prompts", "{files}/prompts.txt", "--workers", "-1"), code: exitUsage, wants: []string{"workers"}},
		{name: "guidance rescale above 1", args: gen("--model", "{files}/sd", "--guidance-rescale", "2"), code: exitUsage, wants: []string{"guidance-rescale"}},
		{name: "width not a multiple of 8", args: gen("--model", "{files}/sd", "--width", "100"), code: exitUsage, wants: []string{"width"}},
		{name: "SD-only key on glyphs", args: gen("--width", "64"), code: exitUsage, wants: []string{"width"}},

		// Reward specs.
		{name: "unknown reward", args: fk("colour:target=#fff"), code: exitUsage, wants: []string{`"color"`}},
		{name: "unknown reward option", args: fk("color:traget=#fff"), code: exitUsage, wants: []string{`"target"`}},
		{name: "reward option without value", args: fk("color:target"), code: exitUsage, wants: []string{"key=value"}},
		{name: "bad colour", args: fk("color:target=#zzzzzz"), code: exitUsage, wants: []string{"zzzzzz"}},
		{name: "classifier without a model", args: fk("classifier:target=3,crop=28"), code: exitUsage, wants: []string{"model"}},
		{name: "classifier model missing", args: fk("classifier:model={dir}/none.onnx,target=3"), code: exitUsage, wants: []string{"none.onnx"}},
		{name: "classifier model not ONNX", args: fk("classifier:model={files}/junk.onnx,target=3"), code: exitUsage, wants: []string{"junk.onnx"}},
		{name: "classifier target negative", args: fk("classifier:model={clf},target=-5,crop=28"), code: exitUsage, wants: []string{"target"}},
		{name: "classifier target beyond classes", args: fk("classifier:model={clf},target=12,crop=28"), code: exitUsage, wants: []string{"target"}},
		{name: "classifier crop larger than the image", args: fk("classifier:model={clf},target=3,crop=100"), code: exitUsage, wants: []string{"crop"}},
		{name: "ocr detect not a boolean", args: fk("ocr:detect=maybe"), code: exitUsage, wants: []string{"detect", "maybe"}},
		{name: "NaN weight", args: fk("nan*color:target=#fff"), code: exitUsage, wants: []string{"nan"}},
		{name: "Inf weight", args: fk("inf*color:target=#fff"), code: exitUsage, wants: []string{"inf"}},
		{name: "zero weight", args: fk("0*color:target=#fff"), code: exitUsage, wants: []string{"weight"}},
		{name: "empty spec term", args: fk("color:target=#fff+"), code: exitUsage},
		{name: "option given twice", args: fk("color:target=#fff,target=#000"), code: exitUsage, wants: []string{"target"}},
		{name: "reward provider auto", args: fk("color:target=#fff,provider=auto"), code: exitUsage, wants: []string{"provider="}},
		{name: "reward provider unknown", args: fk("color:target=#fff,provider=tpu"), code: exitUsage, wants: []string{"provider="}},
		{name: "dino without references", args: fk("dino:model={clf}"), code: exitUsage, wants: []string{"ref"}},
		{name: "preference without a model", args: fk("preference:preset=pickscore"), code: exitUsage, wants: []string{"model"}},
		{name: "score with a bad spec", args: score("--reward", "colour", "{files}/good.png"), code: exitUsage, wants: []string{`"color"`}},

		// Manifests and models.
		{name: "model manifest missing", args: gen("--model", "{dir}/nope.yaml"), code: exitError, wants: []string{"nope.yaml does not exist"}},
		{name: "manifest not YAML", args: gen("--model", "{files}/notyaml.yaml"), code: exitUsage, wants: []string{"notyaml.yaml"}},
		{name: "manifest unknown key", args: gen("--model", "{files}/typo.yaml"), code: exitUsage, wants: []string{`"predicton"`, `"prediction"`}},
		{name: "manifest bad prediction", args: gen("--model", "{files}/badpred.yaml"), code: exitUsage, wants: []string{"prediction"}},
		{name: "manifest missing tensor", args: gen("--model", "{files}/tensor.yaml"), code: exitError, wants: []string{`"latents"`, "zt"}},
		{name: "manifest model file missing", args: gen("--model", "{files}/nomodel.yaml"), code: exitError, wants: []string{"missing.onnx does not exist"}},
		{name: "manifest model not ONNX", args: gen("--model", "{files}/junkmodel.yaml"), code: exitError, wants: []string{"not a valid ONNX model"}},
		{name: "manifest null class out of range", args: gen("--model", "{files}/nullclass.yaml", "--guidance", "2", "--prompt", "3"), code: exitUsage, wants: []string{"null_class"}},
		{name: "manifest bad shape", args: gen("--model", "{files}/shape.yaml"), code: exitError, wants: []string{"shape"}},
		{name: "model name unknown", args: gen("--model", "mnist-dit"), code: exitError, wants: []string{"mnist-dit"}},
		{name: "model is a junk onnx file", args: gen("--model", "{files}/junk.onnx"), code: exitUsage, wants: []string{"junk.onnx"}},
		{name: "models pull unknown", args: []string{"models", "pull", "sd-9"}, code: exitUsage, wants: []string{"sd-9"}},
		{name: "models inspect missing", args: []string{"models", "inspect", "{dir}/none.onnx"}, code: exitError, wants: []string{"none.onnx"}},
		{name: "models inspect junk", args: []string{"models", "inspect", "{files}/junk.onnx"}, code: exitError, wants: []string{"junk.onnx"}},
		{name: "SD folder missing unet", args: gen("--model", "{files}/sd-nounet"), code: exitError, wants: []string{"unet"}},
		{name: "scheduler override unknown", args: gen("--model", "{files}/sd", "--scheduler", "unipc2"), code: exitUsage, wants: []string{"unipc2"}},

		// Images.
		{name: "score a missing file", args: score("--reward", "color:target=#fff", "{dir}/none.png"), code: exitError, wants: []string{"none.png"}},
		{name: "score a text file", args: score("--reward", "color:target=#fff", "{files}/notimage.png"), code: exitError, wants: []string{"notimage.png"}},
		{name: "score a truncated PNG", args: score("--reward", "color:target=#fff", "{files}/truncated.png"), code: exitError, wants: []string{"truncated.png"}},
		{name: "score an image bomb", args: score("--reward", "color:target=#fff", "{files}/bomb.png"), code: exitError, wants: []string{"bomb.png", "pixels"}},
		{name: "init image missing", args: gen("--model", "{files}/sd", "--init-image", "{dir}/none.png"), code: exitUsage, wants: []string{"none.png"}},
		{name: "init image bomb", args: gen("--model", "{files}/sd", "--init-image", "{files}/bomb.png"), code: exitError, wants: []string{"bomb.png", "pixels"}},
		{name: "init image on glyphs", args: gen("--init-image", "{files}/good.png"), code: exitUsage, wants: []string{"init-image"}},
		{name: "dino reference bomb", args: fk("dino:model={files}/dino.onnx,ref={files}/bomb.png"), code: exitError, wants: []string{"bomb.png", "pixels"}},

		// Item files.
		{name: "prompts file missing", args: batch("--prompts", "{dir}/none.txt"), code: exitUsage, wants: []string{"none.txt"}},
		{name: "batch without prompts", args: batch(), code: exitUsage, wants: []string{"prompts"}},
		{name: "JSONL not JSON", args: batch("--prompts", "{files}/bad.jsonl"), code: exitUsage, wants: []string{"line 2"}},
		{name: "JSONL duplicate ids", args: batch("--prompts", "{files}/dup.jsonl"), code: exitUsage, wants: []string{"a"}},
		{name: "JSONL unknown key", args: batch("--prompts", "{files}/unknown.jsonl"), code: exitUsage, wants: []string{`"prompt"`}},
		{name: "JSONL bad override", args: batch("--prompts", "{files}/override.jsonl"), code: exitUsage, wants: []string{"stpes"}},
		{name: "JSONL override wrong type", args: batch("--prompts", "{files}/overridetype.jsonl"), code: exitUsage, wants: []string{"steps"}},
		{name: "JSONL override not per-item", args: batch("--prompts", "{files}/overrideglobal.jsonl"), code: exitUsage, wants: []string{"provider"}},
		{name: "JSONL missing reference", args: batch("--prompts", "{files}/ref.jsonl"), code: exitUsage, wants: []string{"nothere.png"}},
		{name: "prompt naming no class", args: batch("--prompts", "{files}/noclass.txt", "--model", "{mnist}", "--guidance", "2"), code: exitUsage, wants: []string{"class"}},
		{name: "shard out of range", args: batch("--prompts", "{files}/prompts.txt", "--shard", "3/2"), code: exitUsage, wants: []string{"shard"}},
		{name: "shard not a fraction", args: batch("--prompts", "{files}/prompts.txt", "--shard", "half"), code: exitUsage, wants: []string{"shard"}},
		{name: "shard from a broken Kubernetes index", args: batch("--prompts", "{files}/prompts.txt"), env: []string{"JOB_COMPLETION_INDEX=x", "JOB_COMPLETIONS=2"}, code: exitUsage, wants: []string{"JOB_COMPLETION_INDEX"}},
		{name: "max failures below -1", args: batch("--prompts", "{files}/prompts.txt", "--max-failures", "-5"), code: exitUsage, wants: []string{"max-failures"}},
		{name: "unknown progress", args: batch("--prompts", "{files}/prompts.txt", "--progress", "fancy"), code: exitUsage, wants: []string{"fancy"}},
		{name: "export unknown mode", args: export("--mode", "dpo", "--prompts", "{files}/prompts.txt"), code: exitUsage, wants: []string{"dpo"}},
		{name: "export deterministic sampler", args: export("--mode", "ddpo", "--prompts", "{files}/prompts.txt", "--reward", "color:target=#cc2222", "--sampler", "ddim", "--eta", "0"), code: exitUsage, wants: []string{"deterministic"}},
		{name: "export without prompts", args: export("--mode", "ddpo"), code: exitUsage, wants: []string{"prompts"}},

		// Configuration and environment.
		{name: "config file missing", args: gen("--config", "{dir}/none.yaml"), code: exitUsage, wants: []string{"none.yaml"}},
		{name: "config unknown key", args: gen("--config", "{files}/typo-config.yaml"), code: exitUsage, wants: []string{`"stpes"`, `"steps"`}},
		{name: "config wrong type", args: gen("--config", "{files}/type-config.yaml"), code: exitUsage, wants: []string{"steps"}},
		{name: "config not YAML", args: gen("--config", "{files}/notyaml.yaml"), code: exitError, wants: []string{"notyaml.yaml"}},
		{name: "config models not a map", args: gen("--config", "{files}/models-config.yaml"), code: exitError, wants: []string{"models"}},
		{name: "environment typo", args: gen(), env: []string{"FKSTEER_STPES=3"}, code: exitUsage, wants: []string{"FKSTEER_STEPS"}},
		{name: "environment wrong type", args: gen(), env: []string{"FKSTEER_STEPS=ten"}, code: exitUsage, wants: []string{"FKSTEER_STEPS"}},
		{name: "environment models map", args: gen(), env: []string{"FKSTEER_MODELS=x"}, code: exitUsage, wants: []string{"config file"}},

		// Paths, the runtime library and earlier outputs.
		{name: "output is a file", args: []string{"generate", "--out", "{files}/good.png", "--steps", "3", "--provider", "cpu"}, code: exitError, wants: []string{"good.png"}},
		{name: "output under a file", args: []string{"generate", "--out", "{files}/good.png/sub", "--steps", "3", "--provider", "cpu"}, code: exitError, wants: []string{"cannot be created"}},
		{name: "runtime library missing", args: gen(), env: []string{"FKSTEER_ORT_LIB={dir}/libonnxruntime.so"}, code: exitError, wants: []string{"FKSTEER_ORT_LIB"}},
		{name: "runtime library not a library", args: gen(), env: []string{"FKSTEER_ORT_LIB={files}/junk.onnx"}, code: exitError, wants: []string{"junk.onnx"}},
		{name: "runtime library truncated", args: gen(), env: []string{"FKSTEER_ORT_LIB={files}/libonnxruntime.so.1"}, code: exitError, wants: []string{"make ort"}},
		{name: "generate over a different earlier run", args: []string{"generate", "--out", "{prev}", "--prompt", `"Q"`, "--num-images", "2", "--steps", "5", "--seed", "100", "--provider", "cpu"}, code: exitUsage, wants: []string{"100.png"}},
		{name: "batch over changed settings", args: []string{"batch", "--out", "{batch}", "--prompts", "{files}/prompts.txt", "--steps", "6", "--progress", "off", "--provider", "cpu"}, code: exitUsage, wants: []string{"--overwrite"}},
		{name: "batch over a user's files", args: []string{"batch", "--out", "{files}/userdir", "--prompts", "{files}/prompts.txt", "--steps", "3", "--progress", "off", "--provider", "cpu"}, code: exitUsage, wants: []string{"000000.png"}},
		{name: "batch while another run holds the folder", args: []string{"batch", "--out", "{batch}", "--prompts", "{files}/prompts.txt", "--steps", "5", "--progress", "off", "--provider", "cpu"},
			hold: "{batch}/.fksteer-batch/lock", code: exitError, wants: []string{"{batch}"}},
		{name: "merge while another run holds the destination", args: []string{"batch", "merge", "--out", "{batch}", "{files}/otherbatch"},
			hold: "{batch}/.fksteer-batch/lock", code: exitError, wants: []string{"wait for it"}},
		{name: "merge into itself", args: []string{"batch", "merge", "--out", "{batch}", "{batch}"}, code: exitUsage, wants: []string{"itself"}},
		{name: "merge a missing source", args: []string{"batch", "merge", "--out", "{dir}/m", "{dir}/none"}, code: exitError, wants: []string{"none"}},
		{name: "merge into an existing batch of other settings", args: []string{"batch", "merge", "--out", "{batch}", "{files}/otherbatch"}, code: exitUsage, wants: []string{"settings"}},
		{name: "tokenizer folder missing", args: []string{"tokenize", "--tokenizer", "{dir}/none", "hi"}, code: exitError, wants: []string{"none"}},
		{name: "tokenize max length negative", args: []string{"tokenize", "--tokenizer", "{files}/sd/tokenizer", "--max-length", "-1", "hi"}, code: exitUsage, wants: []string{"max-length"}},
	}
}

// writeBadFiles prepares the files the rows read.
func writeBadFiles(t *testing.T, dir, mnist string) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	w := func(name, text string) string { return writeFile(t, filepath.Join(dir, name), text) }
	w("prompts.txt", "\"A\"\n\"B\"\n")
	w("noclass.txt", "a cat\n")
	w("nul.txt", "\"A\"\n\"B\x00\"\n")
	w("nul-config.yaml", "prompt: \"a\\0b\"\n") // YAML's \0 escape is a NUL
	w("junk.onnx", "not a model")
	w("notimage.png", "hello")
	w("bad.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \n")
	w("dup.jsonl", "{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}\n")
	w("unknown.jsonl", "{\"promt\": \"x\"}\n")
	w("override.jsonl", "{\"prompt\": \"x\", \"overrides\": {\"stpes\": 3}}\n")
	w("overridetype.jsonl", "{\"prompt\": \"x\", \"overrides\": {\"steps\": \"many\"}}\n")
	w("overrideglobal.jsonl", "{\"prompt\": \"x\", \"overrides\": {\"provider\": \"cpu\"}}\n")
	w("ref.jsonl", "{\"prompt\": \"x\", \"references\": [\"nothere.png\"]}\n")
	w("notyaml.yaml", "model: [unclosed\n")
	w("typo-config.yaml", "stpes: 3\n")
	w("type-config.yaml", "steps: many\n")
	w("models-config.yaml", "models: 3\n")
	manifest, err := os.ReadFile(mnist)
	must(err)
	model := testenv.SharedFile(t, "models/mnist-dit-rf/model.onnx")
	m := strings.Replace(string(manifest), "../../shared/models/mnist-dit-rf/model.onnx", model, 1)
	w("typo.yaml", strings.Replace(m, "prediction: flow", "predicton: flow", 1))
	w("badpred.yaml", strings.Replace(m, "prediction: flow", "prediction: score", 1))
	w("tensor.yaml", strings.Replace(m, "sample: zt", "sample: latents", 1))
	w("nomodel.yaml", strings.Replace(m, model, filepath.Join(dir, "missing.onnx"), 1))
	w("junkmodel.yaml", strings.Replace(m, model, filepath.Join(dir, "junk.onnx"), 1))
	w("nullclass.yaml", strings.Replace(m, "null_class: 10", "null_class: 99", 1))
	w("shape.yaml", strings.Replace(m, "shape: [1, 32, 32]", "shape: [3, 32, 32]", 1))

	// A good 8x8 PNG, a truncated one, and a bomb whose header claims 20000x20000 pixels.
	var goodBuf bytes.Buffer
	must(png.Encode(&goodBuf, image.NewRGBA(image.Rect(0, 0, 8, 8))))
	good := goodBuf.Bytes()
	must(os.WriteFile(filepath.Join(dir, "good.png"), good, 0o644))
	must(os.WriteFile(filepath.Join(dir, "truncated.png"), good[:len(good)/2], 0o644))
	must(os.WriteFile(filepath.Join(dir, "bomb.png"), testimages.PNGBomb(20000, 20000), 0o644))
	// A user's own file where a batch would write.
	must(os.MkdirAll(filepath.Join(dir, "userdir"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "userdir", "000000.png"), good, 0o644))

	// A truncated copy of the runtime library.
	libPath, err := findUserRuntime()
	must(err)
	lib, err := os.ReadFile(libPath)
	must(err)
	must(os.WriteFile(filepath.Join(dir, "libonnxruntime.so.1"), lib[:1<<20], 0o644))

	// A Stable Diffusion folder, one without its UNet, a DINO model and a batch of other
	// settings.
	must(synth.WriteSD(filepath.Join(dir, "sd"), synth.SD15, synth.SDOptions{}))
	must(synth.WriteSD(filepath.Join(dir, "sd-nounet"), synth.SD15, synth.SDOptions{}))
	must(os.RemoveAll(filepath.Join(dir, "sd-nounet", "unet")))
	dino, err := synth.DINOv2(synth.ViT{Size: 28, Patch: 14, Dim: 8, Seed: 3})
	must(err)
	must(os.WriteFile(filepath.Join(dir, "dino.onnx"), dino, 0o644))
	if code, _, stderr := cli(t, "", "batch", "--prompts", filepath.Join(dir, "prompts.txt"), "--steps", "4", "--out", filepath.Join(dir, "otherbatch"), "--progress", "off", "--provider", "cpu"); code != 0 {
		t.Fatalf("fixture batch: exit %d\n%s", code, stderr)
	}
}

// snapshot hashes every file under root except the rows' own folders.
func snapshot(t *testing.T, root string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == filepath.Join(root, "rows") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), "lock") && filepath.Base(filepath.Dir(p)) == ".fksteer-batch" {
			return nil // a lock file is not an output (rows hold one)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = sha256.Sum256(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameOutputs(a, b map[string][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func diffOutputs(a, b map[string][32]byte) string {
	var lines []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			lines = append(lines, "removed "+k)
		} else if w != v {
			lines = append(lines, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			lines = append(lines, "added "+k)
		}
	}
	return strings.Join(lines, "\n")
}

func filepathSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '\'' || r == '"' {
			return '_'
		}
		return r
	}, s)
}
