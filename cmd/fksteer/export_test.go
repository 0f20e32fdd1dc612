package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/finetune/finetunetest"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/onnxgraph"
)

// exportPrompts writes n prompts for the glyphs model, one per line.
func exportPrompts(t *testing.T, n int) string {
	t.Helper()
	glyphs := []string{"A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M"}
	colours := []string{"red", "blue", "green", "yellow"}
	var b strings.Builder
	for i := range n {
		b.WriteString("a " + colours[i%len(colours)] + ` "` + glyphs[i%len(glyphs)] + `"` + "\n\n")
	}
	return writeFile(t, filepath.Join(t.TempDir(), "prompts.txt"), b.String())
}

// exportArgs is a small GRPO export on the glyphs model whose shards hold one group each.
func exportArgs(prompts, out string) []string {
	return []string{"export", "--mode", "grpo", "--prompts", prompts, "--out", out, "--samples", "4", "--steps", "8",
		"--seed", "3", "--reward", "color:target=#cc2222", "--shard-size", "0.5"}
}

func TestExportWritesDataset(t *testing.T) {
	modeltest.Runtime(t)
	out := filepath.Join(t.TempDir(), "ds")
	code, stdout, stderr := cli(t, "", exportArgs(exportPrompts(t, 3), out)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.TrimSpace(stdout) != out || !strings.Contains(stderr, "12 samples in 3 groups") {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
	d, err := finetune.OpenDataset(out)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Info.Complete || len(d.Rows) != 12 || len(d.Info.Shards) != 3 || d.Rows[5].Prompt != `a blue "B"` {
		t.Errorf("dataset: complete %v, %d rows, %d shards, row 5 prompt %q", d.Info.Complete, len(d.Rows), len(d.Info.Shards), d.Rows[5].Prompt)
	}
	// A second run finds everything written and changes nothing.
	before, _ := os.ReadFile(filepath.Join(out, finetune.ManifestFile))
	if code, _, stderr := cli(t, "", exportArgs(exportPrompts(t, 3), out)...); code != 0 {
		t.Fatalf("rerun: exit %d: %s", code, stderr)
	}
	after, _ := os.ReadFile(filepath.Join(out, finetune.ManifestFile))
	if !bytes.Equal(before, after) {
		t.Error("a rerun of a complete export changed the manifest")
	}
}

func TestExportUsageErrors(t *testing.T) {
	modeltest.Runtime(t)
	prompts := exportPrompts(t, 1)
	out := filepath.Join(t.TempDir(), "ds")
	cases := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"no mode", []string{"export", "--prompts", prompts, "--out", out}, []string{"--mode is required"}},
		{"unknown mode", []string{"export", "--mode", "dpo", "--prompts", prompts, "--out", out}, []string{`unknown dataset mode "dpo"`, "grpo"}},
		{"deterministic", []string{"export", "--mode", "ddpo", "--prompts", prompts, "--out", out, "--sampler", "euler", "--reward", "color:target=#f00"}, []string{"deterministic", "--sampler ddim --eta 1"}},
		{"eta zero", []string{"export", "--mode", "d3po", "--prompts", prompts, "--out", out, "--eta", "0", "--reward", "color:target=#f00"}, []string{"d3po", "deterministic"}},
		{"no reward", []string{"export", "--mode", "grpo", "--prompts", prompts, "--out", out}, []string{"needs a reward", "--reward"}},
		{"steering flag", []string{"export", "--mode", "grpo", "--prompts", prompts, "--out", out, "--lambda", "3"}, []string{"--lambda", "--mode steered"}},
		{"prefix for ddpo", []string{"export", "--mode", "ddpo", "--prompts", prompts, "--out", out, "--share-prefix", "2", "--reward", "color:target=#f00"}, []string{"prefix", "grpo"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := cli(t, "", c.args...)
			wantError(t, code, stderr, exitUsage, c.wants...)
		})
	}
	// As for generate, a reward spec that cannot be built is bad usage (exit 2): rerunning the
	// same spec cannot help.
	code, _, stderr := cli(t, "", "export", "--mode", "grpo", "--prompts", prompts, "--out", out, "--reward", "colour:target=#f00")
	wantError(t, code, stderr, exitUsage, `did you mean "color"`)
	if _, err := os.Stat(filepath.Join(out, finetune.InfoFile)); err == nil {
		t.Error("a refused export created a dataset")
	}
}

// countFiles counts the non-hidden files in dir whose names end in suffix.
func countFiles(dir, suffix string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), suffix) {
			n++
		}
	}
	return n
}

// finishedGroups counts the groups of an export whose batch record exists: the groups it has
// finished, each whole (batch checks every file's sha256 against the record on resume).
func finishedGroups(t *testing.T, out string, prompts int) int {
	t.Helper()
	n := 0
	for i := range prompts {
		if _, err := batch.ReadRecord(finetune.WorkDir(out), finetune.GroupID(i)); err == nil {
			n++
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("group %d: %v", i, err)
		}
	}
	return n
}

// sameDataset requires two dataset folders to hold the same files, byte for byte.
var sameDataset = finetunetest.SameFiles

// TestExportSurvivesSIGKILL kills `fksteer export --workers 2` (this test binary re-executed as
// the CLI) with SIGKILL at random points, three times, then lets a fourth run finish. After
// each kill every finished group is whole and no finished group was lost, and a dataset left by
// an earlier assembly still opens; the fourth run samples only the groups no record holds (what
// was in flight at each kill was lost, nothing else), and the finished dataset equals one
// written without interruption, byte for byte.
//
// The kill points come from a PCG generator seeded with (2024, 611): each is a number of sample
// images in the work folder, polled every 2 ms. A group's images are written before its record,
// so the kills land anywhere from mid-sampling to mid-commit of a group. A failure names the
// kill points, which the seed reproduces.
func TestExportSurvivesSIGKILL(t *testing.T) {
	modeltest.Runtime(t)
	const prompts, samples = 12, 4
	promptFile := exportPrompts(t, prompts)
	ref := filepath.Join(t.TempDir(), "ref")
	if code, _, stderr := cli(t, "", exportArgs(promptFile, ref)...); code != 0 {
		t.Fatalf("reference export: exit %d: %s", code, stderr)
	}

	out := filepath.Join(t.TempDir(), "ds")
	args := append(exportArgs(promptFile, out), "--workers", "2")
	rng := rand.New(rand.NewPCG(2024, 611))
	work := finetune.WorkDir(out)
	// Three kill points, increasing, each beyond what the previous round left on disk.
	t1 := 5 + rng.IntN(12)
	t2 := t1 + 5 + rng.IntN(30-t1-5)
	t3 := t2 + 5 + rng.IntN(prompts*samples-4-t2-5)
	finished := 0
	for round, target := range []int{t1, t2, t3} {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "FKSTEER_TEST_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		killed := false
	poll:
		for {
			select {
			case err := <-done:
				t.Logf("round %d: the export finished (%v) before %d images were on disk", round, err, target)
				break poll
			default:
			}
			if countFiles(work, ".png") >= target {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				<-done
				killed = true
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		now := finishedGroups(t, out, prompts)
		if now < finished {
			t.Errorf("round %d: %d groups finished, fewer than the %d before the round", round, now, finished)
		}
		finished = now
		if _, err := os.Stat(filepath.Join(out, finetune.InfoFile)); err == nil {
			if _, err := finetune.OpenDataset(out); err != nil {
				t.Fatalf("round %d, killed at %d images: the dataset an earlier run assembled is not readable: %v\nstderr: %s", round, target, err, stderr.String())
			}
		}
		t.Logf("round %d: killed=%v at %d images; %d groups finished", round, killed, target, finished)
	}

	code, stdout, stderr := cli(t, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("resumed export: exit %d: %s", code, stderr)
	}
	var sum finetune.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Skipped != finished || sum.Sampled != prompts-finished || sum.Redone != 0 || !sum.Complete {
		t.Errorf("resumed export: %+v; want the %d finished groups kept and only the other %d sampled", sum, finished, prompts-finished)
	}
	if python, err := exec.LookPath("python3"); err == nil {
		// The standard-library reader of scripts/check_dataset.py must read it too.
		if out, err := exec.Command(python, filepath.Join("..", "..", "scripts", "check_dataset.py"), out, "--rows", "8").CombinedOutput(); err != nil {
			t.Fatalf("check_dataset.py cannot read the resumed dataset: %v\n%s", err, out)
		}
	}
	sameDataset(t, ref, out)
	for _, dir := range []string{out, filepath.Join(out, finetune.ShardDir), filepath.Join(out, finetune.ImageDir), work} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") && !e.IsDir() {
				t.Errorf("temporary file %s left in %s", e.Name(), dir)
			}
		}
	}
}

// TestExportWorkersShardsAndMerge: --workers 2, and two shards (one assigned by a Kubernetes
// Indexed Job's variables, one by --shard) joined by fksteer export merge, write the dataset a
// one-worker export writes, byte for byte; a shard alone writes no dataset and says how to join.
func TestExportWorkersShardsAndMerge(t *testing.T) {
	modeltest.Runtime(t)
	promptFile := exportPrompts(t, 5)
	root := t.TempDir()
	dir := func(name string) string { return filepath.Join(root, name) }
	for _, r := range []struct {
		out   string
		extra []string
	}{{dir("ref"), []string{"--workers", "1"}}, {dir("two"), []string{"--workers", "2"}}, {dir("s1"), []string{"--shard", "1/2"}}} {
		if code, _, stderr := cli(t, "", append(exportArgs(promptFile, r.out), r.extra...)...); code != 0 {
			t.Fatalf("%v: exit %d: %s", r.extra, code, stderr)
		}
	}
	sameDataset(t, dir("ref"), dir("two"))
	t.Setenv(batch.EnvK8sIndex, "0")
	t.Setenv(batch.EnvK8sCount, "2")
	code, _, stderr := cli(t, "", exportArgs(promptFile, dir("s0"))...)
	if code != 0 || !strings.Contains(stderr, "export shard 0/2: 3 groups") || !strings.Contains(stderr, "fksteer export merge") {
		t.Fatalf("shard from the environment: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir("s0"), finetune.InfoFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a shard wrote a dataset (%v)", err)
	}
	code, stdout, stderr := cli(t, "", "export", "merge", "--out", dir("merged"), dir("s0"), dir("s1"))
	if code != 0 || strings.TrimSpace(stdout) != dir("merged") || !strings.Contains(stderr, "20 samples in 5 groups") {
		t.Fatalf("merge: exit %d: %s%s", code, stdout, stderr)
	}
	sameDataset(t, dir("ref"), dir("merged"))
	// Shards of another export are refused with the folder left as it was.
	other := dir("other")
	if code, _, stderr := cli(t, "", append(exportArgs(promptFile, other), "--shard", "1/2", "--seed", "4")...); code != 0 {
		t.Fatalf("other export: exit %d: %s", code, stderr)
	}
	code, _, stderr = cli(t, "", "export", "merge", "--out", dir("mixed"), dir("s0"), other)
	wantError(t, code, stderr, 1, "other settings", "seed")
	if _, err := os.Stat(dir("mixed")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused merge created its folder (%v)", err)
	}
}

// tinyViT writes a ViT-shaped ONNX model in DINOv2's layout (pixel_values [B,3,224,224] ->
// last_hidden_state [B, 1+256, 4]: CLS = mean of the patch tokens, patches a 14x14/stride-14
// convolution).
func tinyViT(t *testing.T, dir string) string {
	t.Helper()
	w := make([]float32, 4*3*14*14)
	for i := range w {
		w[i] = float32(i%7-3) / 100
	}
	g := onnxgraph.New("tiny-vit", 17)
	x := g.Input("pixel_values", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(3), onnxgraph.Fixed(224), onnxgraph.Fixed(224))
	conv := g.Op("Conv", []string{x, g.Initializer("w", []int64{4, 3, 14, 14}, w)}, onnxgraph.AttrInts("kernel_shape", 14, 14), onnxgraph.AttrInts("strides", 14, 14))
	patches := g.Op("Transpose", []string{g.Op("Reshape", []string{conv, g.Int64s(0, 4, -1)})}, onnxgraph.AttrInts("perm", 0, 2, 1))
	cls := g.Op("ReduceMean", []string{patches}, onnxgraph.AttrInts("axes", 1), onnxgraph.AttrInt("keepdims", 1))
	g.Node("Concat", []string{cls, patches}, []string{"last_hidden_state"}, onnxgraph.AttrInt("axis", 1))
	g.Output("last_hidden_state", onnxgraph.Float32, onnxgraph.Sym("batch"), onnxgraph.Fixed(257), onnxgraph.Fixed(4))
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vit.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExportAdvGRPOFromTheCommandLine: references given as paths relative to the references file,
// a feature model, and patch tokens by option end up in the dataset.
func TestExportAdvGRPOFromTheCommandLine(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	vit := tinyViT(t, dir)
	if err := os.Mkdir(filepath.Join(dir, "refs"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := image.NewGray(image.Rect(0, 0, 20, 20))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "refs", "r.png"), buf.String())
	prompts := exportPrompts(t, 2)
	refs := writeFile(t, filepath.Join(dir, "refs.json"), `{"a red \"A\"": ["refs/r.png"], "a blue \"B\"": ["refs/r.png", "refs/r.png"]}`)
	out := filepath.Join(dir, "ds")
	code, _, stderr := cli(t, "", "export", "--mode", "adv-grpo", "--prompts", prompts, "--out", out, "--samples", "3", "--steps", "6",
		"--reward", "color:target=#cc2222", "--references", refs, "--dino", vit, "--dino-patches", "5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	d, err := finetune.OpenDataset(out)
	if err != nil {
		t.Fatal(err)
	}
	last := d.Rows[len(d.Rows)-1]
	for name, shape := range map[string][]int{"dino_cls": {3, 4}, "dino_patches": {3, 5, 4}, "ref_dino_cls": {2, 4}, "ref_dino_patches": {2, 5, 4}} {
		tensor, err := d.Tensor(last, name)
		if err != nil || !slices.Equal(tensor.Shape, shape) {
			t.Errorf("%s: %v %v, want shape %v", name, tensor.Shape, err, shape)
		}
	}
	if len(last.References) != 2 || !strings.HasPrefix(last.References[0], "references/") {
		t.Errorf("references %v", last.References)
	}
}

// TestExportSteeredFromTheCommandLine: the FK flags reach the sampler, and the rows carry
// normalised log-weights and the genealogy of the resamplings.
func TestExportSteeredFromTheCommandLine(t *testing.T) {
	modeltest.Runtime(t)
	out := filepath.Join(t.TempDir(), "ds")
	code, _, stderr := cli(t, "", "export", "--mode", "steered", "--prompts", exportPrompts(t, 1), "--out", out, "--samples", "6",
		"--steps", "10", "--reward", "color:target=#cc2222", "--lambda", "20", "--resample-every", "2", "--resample-start", "2", "--resample-end", "6")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	d, err := finetune.OpenDataset(out)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, r := range d.Rows {
		if r.LogWeight == nil || r.Scheduler.FK == nil || r.Scheduler.FK.Lambda != 20 || r.Scheduler.FK.Every != 2 {
			t.Fatalf("%s: log-weight %v, fk settings %+v", r.ID, r.LogWeight, r.Scheduler.FK)
		}
		sum += math.Exp(float64(*r.LogWeight))
		if len(r.Genealogy) != 3 { // resamplings at steps 2, 4, 6
			t.Errorf("%s: genealogy %v, want 3 resamplings", r.ID, r.Genealogy)
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("weights sum to %g", sum)
	}
}

// TestExportReadsSharedSettings: export's sampling keys are the same configuration keys as
// generate's, so the environment and the config file set them too (flags still win).
func TestExportReadsSharedSettings(t *testing.T) {
	modeltest.Runtime(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fksteer.yaml"), "reward: color:target=#cc2222\nseed: 9\n")
	t.Setenv("FKSTEER_STEPS", "5")
	out := filepath.Join(dir, "ds")
	code, _, stderr := cli(t, dir, "export", "--mode", "ddpo", "--prompts", exportPrompts(t, 1), "--out", out, "--samples", "2", "--seed", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(filepath.Join(out, "dataset.json"))
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Settings struct {
			Scheduler struct {
				Steps int `json:"steps"`
			} `json:"scheduler"`
			Seed   uint64 `json:"seed"`
			Reward struct {
				Spec string `json:"spec"`
			} `json:"reward"`
		} `json:"settings"`
	}
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	st := info.Settings
	if st.Scheduler.Steps != 5 || st.Seed != 4 || st.Reward.Spec != "color:target=#cc2222" {
		t.Errorf("dataset.json %s: want steps 5 (env), seed 4 (flag over file), the file's reward", data)
	}
}
