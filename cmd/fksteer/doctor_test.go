package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/vulkan"
)

func TestDoctorReportsLibraryProvidersAndAuto(t *testing.T) {
	modeltest.Runtime(t)
	code, out, errOut := cli(t, "", "doctor", "--json")
	if code != 0 {
		t.Fatalf("doctor --json: exit %d\n%s", code, errOut)
	}
	var r doctorReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor --json printed no report: %v\n%s", err, out)
	}
	if r.Library.Path != models.LibraryPath() || r.Library.Version == "" || len(r.Library.SHA256) != 64 {
		t.Errorf("library %+v; want the loaded one with its version and sha256", r.Library)
	}
	if r.Library.Pinned != (r.Library.SHA256 == models.RuntimeSHA256) {
		t.Errorf("pinned = %v for sha256 %s", r.Library.Pinned, r.Library.SHA256)
	}
	byName := map[models.Provider]models.ProviderStatus{}
	for _, p := range r.Providers {
		byName[p.Provider] = p
	}
	if cpu := byName[models.CPU]; !cpu.Runs || !cpu.InLibrary {
		t.Errorf("cpu: %+v; want in the library and running", cpu)
	}
	if _, ok := byName[models.WebGPU]; !ok {
		t.Error("no webgpu row")
	}
	if len(r.Vulkan.Devices) == 0 && r.Vulkan.Error == "" {
		t.Error("no Vulkan device and no reason")
	}
	if r.Auto.Provider == "" || r.Auto.Reason == "" {
		t.Errorf("auto %+v; want a provider and a reason", r.Auto)
	}
	if len(vulkan.Probe().Hardware()) == 0 && r.Auto.Provider == models.WebGPU {
		t.Errorf("auto picked webgpu with only software adapters: %+v", r.Auto)
	}

	code, out, _ = cli(t, "", "doctor")
	for _, want := range []string{"ONNX Runtime", "Execution providers", "WebGPU adapters", "Vulkan driver files", "Threads:", "--provider auto picks " + string(r.Auto.Provider)} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("doctor (exit %d) does not say %q:\n%s", code, want, out)
		}
	}
}

func TestProviderSettingsAreChecked(t *testing.T) {
	modeltest.Runtime(t)
	out := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--provider", "tpu"}, "valid: auto, cpu, webgpu"},
		{[]string{"--provider", "cpu", "--provider-option", "preferredLayout=NHWC"}, "takes no provider options"},
		{[]string{"--provider", "webgpu", "--provider-option", "preferredlayout=NHWC"}, "did you mean preferredLayout"},
		{[]string{"--provider-option", "NHWC"}, "is not key=value"},
	} {
		args := append([]string{"generate", "--prompt", `"A"`, "--steps", "2", "--out", out}, tc.args...)
		code, _, errOut := cli(t, "", args...)
		wantError(t, code, errOut, exitUsage, tc.want)
	}
	// Options qualified for another provider are kept for it and ignored here; a list in one
	// environment variable is split at commas.
	t.Setenv("FKSTEER_PROVIDER_OPTION", "webgpu.preferredLayout=NHWC,webgpu.enableGraphCapture=0")
	code, _, errOut := cli(t, "", "generate", "--prompt", `"A"`, "--steps", "2", "--out", out, "--provider", "cpu")
	if code != 0 {
		t.Errorf("cpu with options qualified for webgpu: exit %d\n%s", code, errOut)
	}
}

func TestProviderOptionsParse(t *testing.T) {
	kv, err := providerOptions([]any{"a=1, b = 2", "webgpu.c=x=y"})
	if err != nil || len(kv) != 3 || kv["a"] != "1" || kv["b"] != "2" || kv["webgpu.c"] != "x=y" {
		t.Errorf("providerOptions = %v, %v", kv, err)
	}
	if _, err := providerOptions([]any{3}); err == nil {
		t.Error("a number in the list was accepted")
	}
}

// TestConfigShowListsOnOneLine: a list setting prints in flow style on its key's line, so the
// output stays a valid config file.
func TestConfigShowListsOnOneLine(t *testing.T) {
	code, out, errOut := cli(t, t.TempDir(), "config", "show", "--provider-option", "webgpu.a=1", "--provider-option", "b: 2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "provider-option: [webgpu.a=1, 'b: 2']") {
		t.Errorf("config show prints the list as:\n%s", out)
	}
}
