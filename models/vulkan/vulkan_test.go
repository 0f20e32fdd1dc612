package vulkan

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestProbe reads the devices of this machine. It asserts only what holds everywhere: a probe
// that found devices has no error, and every device has a name and a known type.
func TestProbe(t *testing.T) {
	r := Probe()
	for _, d := range r.Devices {
		t.Logf("device %q: %s, vendor %s, Vulkan %s, driver %s %s", d.Name, d.TypeName, d.Vendor, d.APIVersion, d.Driver, d.DriverInfo)
		if d.Name == "" || d.Type < Other || d.Type > CPU {
			t.Errorf("device %+v: no name or an unknown type", d)
		}
	}
	for _, m := range r.Manifests {
		t.Logf("manifest %s -> %s %s %s", m.Path, m.Library, m.APIVersion, m.Error)
	}
	if len(r.Devices) > 0 && r.Err != nil {
		t.Errorf("devices found, yet error %v", r.Err)
	}
	if len(r.Devices) == 0 && r.Err == nil {
		t.Error("no device and no error saying why")
	}
}

// TestProbeWithoutDriver points the loader at a manifest that does not exist: the probe must say
// that no driver was found, naming what to install, rather than fail or crash.
func TestProbeWithoutDriver(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.json")
	t.Setenv("VK_DRIVER_FILES", missing)
	t.Setenv("VK_ICD_FILENAMES", missing)
	r := Probe()
	if errors.Is(r.Err, ErrNoLoader) {
		t.Skip("no Vulkan loader on this machine: ", r.Err)
	}
	if len(r.Devices) != 0 || !errors.Is(r.Err, ErrNoDriver) {
		t.Fatalf("probe with no driver: devices %v, error %v; want ErrNoDriver", r.Devices, r.Err)
	}
	if len(r.Manifests) != 1 || r.Manifests[0].Error == "" {
		t.Errorf("manifests %+v: want the one named file, unreadable", r.Manifests)
	}
}

func TestManifestsHonourOverride(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x_icd.json")
	if err := os.WriteFile(f, []byte(`{"file_format_version":"1.0.1","ICD":{"library_path":"libx.so","api_version":"1.3.0"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VK_DRIVER_FILES", dir)
	ms := Manifests()
	if len(ms) != 1 || ms[0].Library != "libx.so" || ms[0].APIVersion != "1.3.0" || ms[0].Path != f {
		t.Fatalf("manifests %+v; want the one file of the folder with libx.so 1.3.0", ms)
	}
}

func TestTypes(t *testing.T) {
	for typ, hw := range map[DeviceType]bool{Other: false, IntegratedGPU: true, DiscreteGPU: true, VirtualGPU: true, CPU: false} {
		if typ.Hardware() != hw {
			t.Errorf("%v.Hardware() = %v", typ, !hw)
		}
	}
	if got := apiVersion(1<<22 | 3<<12 | 289); got != "1.3.289" {
		t.Errorf("apiVersion = %s", got)
	}
}
