// Package vulkan reports what the system's Vulkan loader sees: its driver manifests and the
// physical devices they expose. ONNX Runtime's WebGPU execution provider runs on Dawn, which on
// Linux draws its adapters from Vulkan, so this is how fksteer tells a real GPU from a software
// rasteriser (lavapipe, SwiftShader) and explains why WebGPU has no adapter.
//
// The loader is opened with dlopen at run time, never linked, so fksteer builds and runs on
// machines without Vulkan; the few structures read are declared here rather than taken from
// Vulkan's headers, which a build machine need not have.
package vulkan

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int32_t VkResult;
typedef void* VkInstance;
typedef void* VkPhysicalDevice;
typedef void (*PFN_vkVoidFunction)(void);
typedef PFN_vkVoidFunction (*PFN_vkGetInstanceProcAddr)(VkInstance, const char*);

typedef struct {
	int32_t sType;
	const void* pNext;
	const char* pApplicationName;
	uint32_t applicationVersion;
	const char* pEngineName;
	uint32_t engineVersion;
	uint32_t apiVersion;
} AppInfo;

typedef struct {
	int32_t sType;
	const void* pNext;
	uint32_t flags;
	const AppInfo* pApplicationInfo;
	uint32_t enabledLayerCount;
	const char* const* ppEnabledLayerNames;
	uint32_t enabledExtensionCount;
	const char* const* ppEnabledExtensionNames;
} InstanceCreateInfo;

// The head of VkPhysicalDeviceProperties; the rest (limits, sparse properties) is not read, but
// the driver writes it, so the buffer handed over is larger than the whole structure.
typedef struct {
	uint32_t apiVersion;
	uint32_t driverVersion;
	uint32_t vendorID;
	uint32_t deviceID;
	int32_t deviceType;
	char deviceName[256];
} PropertiesHead;

typedef struct {
	int32_t sType;
	void* pNext;
	int32_t driverID;
	char driverName[256];
	char driverInfo[256];
	uint8_t conformanceVersion[4];
} DriverProperties;

typedef struct {
	uint32_t apiVersion, driverVersion, vendorID, deviceID;
	int32_t deviceType;
	char deviceName[256];
	char driverName[256];
	char driverInfo[256];
} Device;

enum {
	sTypeAppInfo = 0,
	sTypeInstanceCreateInfo = 1,
	sTypeProperties2 = 1000059001,
	sTypeDriverProperties = 1000196000,
	propertiesBuffer = 4096,
};

typedef VkResult (*PFN_create)(const InstanceCreateInfo*, const void*, VkInstance*);
typedef void (*PFN_destroy)(VkInstance, const void*);
typedef VkResult (*PFN_enumerate)(VkInstance, uint32_t*, VkPhysicalDevice*);
typedef void (*PFN_props)(VkPhysicalDevice, void*);

// probe opens the loader, creates an instance and fills up to max devices. It returns the number
// of devices, or a negative stage code: -1 no loader, -2 no entry point, -3 vkCreateInstance
// failed (*vkres holds its VkResult), -4 enumeration failed.
static int probe(Device* out, int max, VkResult* vkres, char* dlerr, int dlerrLen) {
	void* lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		const char* e = dlerror();
		strncpy(dlerr, e ? e : "", dlerrLen - 1);
		return -1;
	}
	PFN_vkGetInstanceProcAddr gipa = (PFN_vkGetInstanceProcAddr)dlsym(lib, "vkGetInstanceProcAddr");
	if (!gipa) { dlclose(lib); return -2; }
	PFN_create create = (PFN_create)gipa(NULL, "vkCreateInstance");
	if (!create) { dlclose(lib); return -2; }
	AppInfo app = {sTypeAppInfo, NULL, "fksteer", 1, "fksteer", 1, (1u << 22) | (1u << 12)};
	InstanceCreateInfo ci = {sTypeInstanceCreateInfo, NULL, 0, &app, 0, NULL, 0, NULL};
	VkInstance inst = NULL;
	*vkres = create(&ci, NULL, &inst);
	if (*vkres != 0) { dlclose(lib); return -3; }
	PFN_destroy destroy = (PFN_destroy)gipa(inst, "vkDestroyInstance");
	PFN_enumerate enumerate = (PFN_enumerate)gipa(inst, "vkEnumeratePhysicalDevices");
	PFN_props props2 = (PFN_props)gipa(inst, "vkGetPhysicalDeviceProperties2");
	PFN_props props = (PFN_props)gipa(inst, "vkGetPhysicalDeviceProperties");
	uint32_t n = 0;
	VkPhysicalDevice devs[16];
	if (!enumerate || !props) { destroy(inst, NULL); dlclose(lib); return -2; }
	*vkres = enumerate(inst, &n, NULL);
	if (*vkres != 0) { destroy(inst, NULL); dlclose(lib); return -4; }
	if (n > 16) n = 16;
	*vkres = enumerate(inst, &n, devs);
	if (*vkres < 0) { destroy(inst, NULL); dlclose(lib); return -4; }
	int count = 0;
	for (uint32_t i = 0; i < n && count < max; i++) {
		Device* d = &out[count++];
		memset(d, 0, sizeof *d);
		// 16 bytes of VkPhysicalDeviceProperties2's sType and pNext, then the properties.
		unsigned char* buf = calloc(1, propertiesBuffer);
		if (!buf) break;
		DriverProperties drv;
		memset(&drv, 0, sizeof drv);
		drv.sType = sTypeDriverProperties;
		PropertiesHead* head = (PropertiesHead*)(buf + 16);
		if (props2) {
			*(int32_t*)buf = sTypeProperties2;
			*(void**)(buf + 8) = &drv;
			props2(devs[i], buf);
		} else {
			props(devs[i], head);
		}
		d->apiVersion = head->apiVersion;
		d->driverVersion = head->driverVersion;
		d->vendorID = head->vendorID;
		d->deviceID = head->deviceID;
		d->deviceType = head->deviceType;
		memcpy(d->deviceName, head->deviceName, 255);
		memcpy(d->driverName, drv.driverName, 255);
		memcpy(d->driverInfo, drv.driverInfo, 255);
		free(buf);
	}
	destroy(inst, NULL);
	dlclose(lib);
	return count;
}
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DeviceType is Vulkan's VkPhysicalDeviceType.
type DeviceType int

// The device types, as Vulkan numbers them.
const (
	Other DeviceType = iota
	IntegratedGPU
	DiscreteGPU
	VirtualGPU
	CPU
)

func (t DeviceType) String() string {
	switch t {
	case IntegratedGPU:
		return "integrated GPU"
	case DiscreteGPU:
		return "discrete GPU"
	case VirtualGPU:
		return "virtual GPU"
	case CPU:
		return "CPU (software)"
	}
	return "other"
}

// Hardware reports whether the device is a real GPU. Dawn gives a CPU-type device (lavapipe,
// SwiftShader) the adapter type CPU: it runs shaders on the host, slower than ONNX Runtime's CPU
// kernels.
func (t DeviceType) Hardware() bool {
	return t == IntegratedGPU || t == DiscreteGPU || t == VirtualGPU
}

// Device is one Vulkan physical device.
type Device struct {
	Name       string     `json:"name"`
	Type       DeviceType `json:"-"`
	TypeName   string     `json:"type"`
	Vendor     string     `json:"vendor"`
	VendorID   uint32     `json:"vendor_id"`
	DeviceID   uint32     `json:"device_id"`
	APIVersion string     `json:"api_version"`
	// Driver and DriverInfo are the driver's own name and version string (Vulkan 1.2's
	// VkPhysicalDeviceDriverProperties); empty for older drivers.
	Driver     string `json:"driver,omitempty"`
	DriverInfo string `json:"driver_info,omitempty"`
}

// Manifest is one Vulkan driver manifest (ICD JSON file) the loader would read.
type Manifest struct {
	Path       string `json:"path"`
	Library    string `json:"library"`
	APIVersion string `json:"api_version,omitempty"`
	// Error says why the file could not be read, if it could not.
	Error string `json:"error,omitempty"`
}

// Report is what the loader sees. Err is nil when devices were enumerated (possibly none).
type Report struct {
	Manifests []Manifest `json:"manifests"`
	Devices   []Device   `json:"devices"`
	Err       error      `json:"-"`
}

// ErrNoLoader means libvulkan.so.1 could not be loaded.
var ErrNoLoader = errors.New("the Vulkan loader (libvulkan.so.1) is not installed")

// ErrNoDriver means the loader found no driver that could create an instance or no device.
var ErrNoDriver = errors.New("the Vulkan loader found no driver")

// Probe asks the Vulkan loader for its devices. It never fails: a machine without Vulkan gets a
// Report whose Err says why, in words that name the package to install.
func Probe() Report {
	r := Report{Manifests: Manifests()}
	var devs [16]C.Device
	var vkres C.VkResult
	var dlerr [512]C.char
	n := int(C.probe(&devs[0], C.int(len(devs)), &vkres, &dlerr[0], C.int(len(dlerr))))
	switch {
	case n == -1:
		r.Err = fmt.Errorf("%w (%s): install it with your GPU's Vulkan driver (Debian/Ubuntu: apt-get install libvulkan1 mesa-vulkan-drivers for AMD and Intel, or NVIDIA's driver)", ErrNoLoader, C.GoString(&dlerr[0]))
	case n == -2:
		r.Err = fmt.Errorf("the Vulkan loader lacks vkGetInstanceProcAddr or a core entry point: reinstall libvulkan1")
	case n == -3:
		r.Err = fmt.Errorf("%w: vkCreateInstance failed with VkResult %d (%s); %s", ErrNoDriver, int(vkres), resultName(int(vkres)), driverHint(r.Manifests))
	case n == -4:
		r.Err = fmt.Errorf("vkEnumeratePhysicalDevices failed with VkResult %d (%s)", int(vkres), resultName(int(vkres)))
	case n == 0:
		r.Err = fmt.Errorf("%w: no physical device; %s", ErrNoDriver, driverHint(r.Manifests))
	}
	for i := 0; i < n; i++ {
		d := devs[i]
		t := DeviceType(d.deviceType)
		r.Devices = append(r.Devices, Device{
			Name:       C.GoString(&d.deviceName[0]),
			Type:       t,
			TypeName:   t.String(),
			Vendor:     VendorName(uint32(d.vendorID)),
			VendorID:   uint32(d.vendorID),
			DeviceID:   uint32(d.deviceID),
			APIVersion: apiVersion(uint32(d.apiVersion)),
			Driver:     C.GoString(&d.driverName[0]),
			DriverInfo: C.GoString(&d.driverInfo[0]),
		})
	}
	return r
}

// Hardware returns the devices that are real GPUs.
func (r Report) Hardware() []Device {
	var out []Device
	for _, d := range r.Devices {
		if d.Type.Hardware() {
			out = append(out, d)
		}
	}
	return out
}

func driverHint(ms []Manifest) string {
	if len(ms) == 0 {
		return "no driver manifest (icd.d/*.json) was found: install your GPU's Vulkan driver (Debian/Ubuntu: mesa-vulkan-drivers for AMD and Intel; NVIDIA's driver ships nvidia_icd.json; in a container, the NVIDIA runtime adds it only with NVIDIA_DRIVER_CAPABILITIES including graphics)"
	}
	paths := make([]string, len(ms))
	unreadable := 0
	for i, m := range ms {
		paths[i] = m.Path
		if m.Error != "" {
			unreadable++
		}
	}
	if unreadable == len(ms) {
		return "no driver manifest could be read (" + strings.Join(paths, ", ") + "): fix VK_DRIVER_FILES / VK_ICD_FILENAMES or install your GPU's Vulkan driver"
	}
	return "the driver manifests found (" + strings.Join(paths, ", ") + ") gave no usable device: check that the driver matches the kernel module and that /dev/dri or /dev/nvidia* is reachable"
}

// VendorName names a PCI vendor id.
func VendorName(id uint32) string {
	switch id {
	case 0x10de:
		return "NVIDIA"
	case 0x1002:
		return "AMD"
	case 0x8086:
		return "Intel"
	case 0x13b5:
		return "ARM"
	case 0x5143:
		return "Qualcomm"
	case 0x106b:
		return "Apple"
	case 0x10005:
		return "Mesa"
	case 0x1af4:
		return "virtio"
	}
	return fmt.Sprintf("0x%04x", id)
}

func apiVersion(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", (v>>22)&0x7f, (v>>12)&0x3ff, v&0xfff)
}

func resultName(r int) string {
	switch r {
	case -1:
		return "VK_ERROR_OUT_OF_HOST_MEMORY"
	case -2:
		return "VK_ERROR_OUT_OF_DEVICE_MEMORY"
	case -3:
		return "VK_ERROR_INITIALIZATION_FAILED"
	case -6:
		return "VK_ERROR_LAYER_NOT_PRESENT"
	case -7:
		return "VK_ERROR_EXTENSION_NOT_PRESENT"
	case -9:
		return "VK_ERROR_INCOMPATIBLE_DRIVER"
	}
	return "unknown"
}

// ManifestDirs are the folders the Vulkan loader searches for driver manifests on Linux, in its
// order, unless VK_DRIVER_FILES or VK_ICD_FILENAMES name the files.
func ManifestDirs() []string {
	home, _ := os.UserHomeDir()
	configHome := envOr("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	dataHome := envOr("XDG_DATA_HOME", filepath.Join(home, ".local", "share"))
	var dirs []string
	dirs = append(dirs, filepath.Join(configHome, "vulkan", "icd.d"))
	for _, d := range filepath.SplitList(envOr("XDG_CONFIG_DIRS", "/etc/xdg")) {
		dirs = append(dirs, filepath.Join(d, "vulkan", "icd.d"))
	}
	dirs = append(dirs, "/etc/vulkan/icd.d", filepath.Join(dataHome, "vulkan", "icd.d"))
	for _, d := range filepath.SplitList(envOr("XDG_DATA_DIRS", "/usr/local/share:/usr/share")) {
		dirs = append(dirs, filepath.Join(d, "vulkan", "icd.d"))
	}
	return dirs
}

// Manifests lists the driver manifests the loader would read.
func Manifests() []Manifest {
	var files []string
	override := os.Getenv("VK_DRIVER_FILES")
	if override == "" {
		override = os.Getenv("VK_ICD_FILENAMES")
	}
	if override != "" {
		for _, p := range filepath.SplitList(override) {
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				files = append(files, jsonFiles(p)...)
			} else {
				files = append(files, p)
			}
		}
	} else {
		seen := map[string]bool{}
		for _, d := range ManifestDirs() {
			for _, f := range jsonFiles(d) {
				if !seen[filepath.Base(f)] {
					seen[filepath.Base(f)] = true
					files = append(files, f)
				}
			}
		}
	}
	out := make([]Manifest, 0, len(files))
	for _, f := range files {
		out = append(out, readManifest(f))
	}
	return out
}

func jsonFiles(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	return m
}

func readManifest(path string) Manifest {
	m := Manifest{Path: path}
	b, err := os.ReadFile(path)
	if err != nil {
		m.Error = err.Error()
		return m
	}
	var doc struct {
		ICD struct {
			LibraryPath string `json:"library_path"`
			APIVersion  string `json:"api_version"`
		} `json:"ICD"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		m.Error = "not a Vulkan driver manifest: " + err.Error()
		return m
	}
	m.Library, m.APIVersion = doc.ICD.LibraryPath, doc.ICD.APIVersion
	return m
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
