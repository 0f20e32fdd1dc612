package models_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/glyphs"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/vulkan"
)

func TestParseProviderNames(t *testing.T) {
	for in, want := range map[string]models.Provider{"": models.CPU, "WebGPU": models.WebGPU, " auto ": models.Auto, "cuda": models.CUDA} {
		if got, err := models.ParseProvider(in); err != nil || got != want {
			t.Errorf("ParseProvider(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := models.ParseProvider("gpu"); err == nil || !strings.Contains(err.Error(), "webgpu") {
		t.Errorf("ParseProvider(gpu) error %v; want one listing webgpu", err)
	}
}

func TestCheckProviderOptions(t *testing.T) {
	if err := models.CheckProviderOptions(models.WebGPU, map[string]string{"preferredLayout": "NHWC", "enableGraphCapture": "1"}); err != nil {
		t.Errorf("valid WebGPU options refused: %v", err)
	}
	err := models.CheckProviderOptions(models.WebGPU, map[string]string{"preferredlayout": "NHWC"})
	if err == nil || !strings.Contains(err.Error(), "did you mean preferredLayout") {
		t.Errorf("misspelt WebGPU option: %v; want a hint naming preferredLayout", err)
	}
	if err := models.CheckProviderOptions(models.CPU, map[string]string{"x": "1"}); err == nil || !strings.Contains(err.Error(), "webgpu.x") {
		t.Errorf("option for the CPU provider: %v; want a refusal suggesting a qualified key", err)
	}
}

// TestQualifiedProviderOptions opens the probe model on the CPU with an option qualified for
// WebGPU: it must be dropped, not refused, while an unqualified one is refused.
func TestQualifiedProviderOptions(t *testing.T) {
	modeltest.Runtime(t)
	st := models.CheckProvider(models.CPU, models.WithProviderOptions(map[string]string{"webgpu.preferredLayout": "NHWC", "cuda.device_id": "1"}))
	if !st.Runs {
		t.Errorf("CPU with options qualified for other providers: %s", st.Detail)
	}
	st = models.CheckProvider(models.CPU, models.WithProviderOptions(map[string]string{"preferredLayout": "NHWC"}))
	if st.Runs || !strings.Contains(st.Detail, "takes no provider options") {
		t.Errorf("CPU with an unqualified option: runs %v, %s; want a refusal", st.Runs, st.Detail)
	}
}

// TestMissingProviderIsNotInLibrary: CUDA on a library built without it is reported as absent
// from the library (not as a device problem), naming the file ONNX Runtime would load.
func TestMissingProviderIsNotInLibrary(t *testing.T) {
	modeltest.Runtime(t)
	st := models.CheckProvider(models.CUDA)
	if st.Runs {
		t.Skip("this ONNX Runtime library runs CUDA")
	}
	if st.InLibrary || !strings.Contains(st.Detail, "libonnxruntime_providers_cuda.so") {
		t.Errorf("CUDA on a library without it: %+v", st)
	}
}

// TestAutoNeverPicksSoftware: on a machine whose only Vulkan devices are software renderers (CI's
// lavapipe) or that has none, auto is the CPU, and says why.
func TestAutoNeverPicksSoftware(t *testing.T) {
	modeltest.Runtime(t)
	if len(vulkan.Probe().Hardware()) > 0 {
		t.Skip("this machine has a hardware GPU")
	}
	c := models.ChooseAuto()
	t.Logf("auto: %s (%s)", c.Provider, c.Reason)
	if c.Provider != models.CPU || c.Reason == "" {
		t.Fatalf("auto chose %s (%q); want cpu with a reason", c.Provider, c.Reason)
	}
	if r := vulkan.Probe(); r.Err == nil && !strings.Contains(c.Reason, "software renderers") {
		t.Errorf("reason %q does not say the Vulkan devices are software", c.Reason)
	}
}

func TestWebGPURunsProbeModel(t *testing.T) {
	modeltest.WebGPU(t)
	st := models.CheckProvider(models.WebGPU, models.WithProviderOptions(map[string]string{"preferredLayout": "NHWC"}))
	if !st.Runs {
		t.Fatalf("WebGPU with preferredLayout=NHWC: %s", st.Detail)
	}
	st = models.CheckProvider(models.WebGPU, models.WithProviderOptions(map[string]string{"preferredLayout": "sideways"}))
	if st.Runs || !strings.Contains(st.Detail, "bad WebGPU provider option") {
		t.Errorf("preferredLayout=sideways: runs %v, %q; want a bad-option error", st.Runs, st.Detail)
	}
}

// TestWebGPUWithoutAdapter runs the probe in a child process whose Vulkan loader is pointed at no
// driver (Dawn's adapter is per process): the error must name the missing driver and the fix.
func TestWebGPUWithoutAdapter(t *testing.T) {
	if os.Getenv("FKSTEER_NO_ADAPTER_CHILD") == "1" {
		modeltest.Runtime(t)
		st := models.CheckProvider(models.WebGPU)
		os.Stdout.WriteString("DETAIL: " + st.Detail + "\n")
		return
	}
	modeltest.WebGPU(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestWebGPUWithoutAdapter$", "-test.v")
	none := filepath.Join(t.TempDir(), "none.json")
	cmd.Env = append(os.Environ(), "FKSTEER_NO_ADAPTER_CHILD=1", "VK_DRIVER_FILES="+none, "VK_ICD_FILENAMES="+none)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{"execution provider webgpu found no GPU adapter", "no driver", "--provider cpu"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output does not say %q:\n%s", want, out)
		}
	}
}

func TestProfileNamesProviders(t *testing.T) {
	modeltest.Runtime(t)
	prefix := filepath.Join(t.TempDir(), "probe")
	if st := models.CheckProvider(models.CPU, models.WithProfiling(prefix)); !st.Runs {
		t.Fatal(st.Detail)
	}
	p, err := models.ReadProfiles(prefix)
	if err != nil {
		t.Fatal(err)
	}
	cpu := p.On("cpu")
	if len(cpu) == 0 || len(cpu) != len(p.Nodes) || models.OpCounts(cpu) != "MatMul×1" {
		t.Fatalf("profile nodes %+v; want the one MatMul, on the CPU", p.Nodes)
	}
	if cpu[0].Runs != 1 {
		t.Errorf("MatMul ran %d times in the profile, want 1", cpu[0].Runs)
	}
}

// TestPinnedRuntimeMatchesInstaller keeps RuntimeVersion and RuntimeSHA256 in step with what
// scripts/install-ort.sh installs, so `fksteer doctor` recognises the pinned build.
func TestPinnedRuntimeMatchesInstaller(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "scripts", "install-ort.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ORT_VERSION=" + models.RuntimeVersion + "\n", "ORT_SHA256=" + models.RuntimeSHA256 + "\n"} {
		if !strings.Contains(string(script), want) {
			t.Errorf("scripts/install-ort.sh does not set %q", strings.TrimSpace(want))
		}
	}
}

// TestModelTheProviderRefusesNamesTheFix: WebGPU's graph capture needs every node on the GPU,
// and the glyphs model computes in float64, which WebGPU leaves to the CPU. The error must name
// the provider and the way back to the CPU, not call the file invalid.
func TestModelTheProviderRefusesNamesTheFix(t *testing.T) {
	modeltest.WebGPU(t)
	path, err := glyphs.EnsureModel(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := models.Open(path, models.WithProvider("webgpu", 0), models.WithProviderOptions(map[string]string{"enableGraphCapture": "1"}))
	if err == nil {
		s.Close()
		t.Fatal("graph capture accepted a model with nodes on the CPU")
	}
	for _, want := range []string{"on execution provider webgpu", "--provider cpu", "provider=cpu"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "not a valid ONNX model") {
		t.Errorf("error %q blames the file", err)
	}
}
