package models

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/fksteer/fksteer/models/onnxgraph"
	"github.com/fksteer/fksteer/models/vulkan"
)

// webgpuOptions are the WebGPU execution provider's option names (ONNX Runtime's
// webgpu_provider_options.h). ONNX Runtime ignores names it does not know, so fksteer checks
// them itself: a misspelt option must not silently do nothing. deviceId is left out on purpose:
// it is WebGPU's context id, which needs an instance and device handed over by the caller, not
// an adapter index.
var webgpuOptions = []string{
	"preferredLayout", "enableGraphCapture", "dawnBackendType", "storageBufferCacheMode",
	"uniformBufferCacheMode", "queryResolveBufferCacheMode", "defaultBufferCacheMode",
	"validationMode", "forceCpuNodeNames", "enablePIXCapture", "preserveDevice",
}

// OptionsFor keeps the options that apply to p: unqualified keys, and keys qualified by p's
// name ("webgpu.preferredLayout") with the qualifier removed. Keys qualified by another
// provider's name are dropped.
func OptionsFor(p Provider, kv map[string]string) map[string]string {
	if len(kv) == 0 {
		return nil
	}
	out := map[string]string{}
	for k, v := range kv {
		if q, rest, ok := strings.Cut(k, "."); ok && slices.Contains(providers, Provider(strings.ToLower(q))) {
			if Provider(strings.ToLower(q)) == p {
				out[rest] = v
			}
			continue
		}
		out[k] = v
	}
	return out
}

// CheckProviderOptions reports options that provider p cannot take. The CPU provider takes
// none; WebGPU's are checked against its known names; CUDA's and TensorRT's are checked by
// ONNX Runtime itself when the session is created.
func CheckProviderOptions(p Provider, kv map[string]string) error {
	if len(kv) == 0 {
		return nil
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range kv {
			if !yield(k) {
				return
			}
		}
	})
	switch p {
	case CPU:
		return fmt.Errorf("execution provider cpu takes no provider options (got %s); qualify an option with its provider's name (webgpu.%s=...) to keep it for that provider", strings.Join(keys, ", "), keys[0])
	case WebGPU:
		for _, k := range keys {
			if !slices.Contains(webgpuOptions, k) {
				hint := ""
				for _, w := range webgpuOptions {
					if strings.EqualFold(w, k) {
						hint = fmt.Sprintf(" (did you mean %s?)", w)
					}
				}
				return fmt.Errorf("unknown WebGPU provider option %q%s; valid: %s", k, hint, strings.Join(webgpuOptions, ", "))
			}
		}
	}
	return nil
}

// providerError turns ONNX Runtime's refusal of a provider into a message naming the fix.
func providerError(p Provider, err error) error {
	msg := err.Error()
	switch {
	case p == WebGPU && strings.Contains(msg, "adapter"):
		why := "no Vulkan device"
		r := vulkan.Probe()
		switch {
		case r.Err != nil:
			why = r.Err.Error()
		case len(r.Devices) > 0:
			names := make([]string, len(r.Devices))
			for i, d := range r.Devices {
				names[i] = fmt.Sprintf("%s (%s, %s)", d.Name, d.TypeName, d.DriverInfo)
			}
			why = "Dawn refused every Vulkan device (" + strings.Join(names, "; ") + "); an old driver lacks features WebGPU needs (Mesa's lavapipe before 23, say): update the Vulkan driver"
		}
		return fmt.Errorf("execution provider webgpu found no GPU adapter: %s; or run on the CPU with --provider cpu (`fksteer doctor` shows what was found): %w", why, err)
	case p == WebGPU && strings.Contains(msg, "Invalid"):
		return fmt.Errorf("bad WebGPU provider option: %w", err)
	case strings.Contains(msg, "not supported in this build") || strings.Contains(msg, "Unknown provider") ||
		strings.Contains(msg, "Failed to load") || errors.Is(err, errProviderLibrary):
		return fmt.Errorf("execution provider %s is not available in the loaded ONNX Runtime library %s: point %s (or --ort-lib) at a build with it (for CUDA and TensorRT, Microsoft's GPU release of ONNX Runtime %s), or use --provider auto, webgpu or cpu: %w",
			p, LibraryPath(), LibraryEnv, RuntimeVersion, err)
	}
	return fmt.Errorf("execution provider %s: %w", p, err)
}

var errProviderLibrary = errors.New("provider library missing")

// providerLibraryPresent checks, before ONNX Runtime tries, that a shared-library provider sits
// beside the loaded runtime: ONNX Runtime looks for it there, and its own failure is a logged
// error line on stderr followed by an opaque status.
func providerLibraryPresent(p Provider) error {
	name := map[Provider]string{
		CUDA:     "libonnxruntime_providers_cuda.so",
		TensorRT: "libonnxruntime_providers_tensorrt.so",
		OpenVINO: "libonnxruntime_providers_openvino.so",
	}[p]
	if name == "" || LibraryPath() == "" {
		return nil
	}
	path := filepath.Join(filepath.Dir(LibraryPath()), name)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %s does not exist", errProviderLibrary, path)
	}
	return nil
}

var dawnOnce sync.Once

// prepareDawn gives Dawn the XDG_RUNTIME_DIR it expects; without one it prints errors on every
// adapter request (containers and batch jobs often run without a login session).
func prepareDawn() {
	dawnOnce.Do(func() {
		if os.Getenv("XDG_RUNTIME_DIR") != "" {
			return
		}
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("fksteer-runtime-%d", os.Getuid()))
		if err := os.MkdirAll(dir, 0o700); err == nil {
			os.Setenv("XDG_RUNTIME_DIR", dir)
		}
	})
}

// ProviderStatus says whether the loaded library has a provider and whether it runs here.
type ProviderStatus struct {
	Provider Provider `json:"provider"`
	// InLibrary: the loaded ONNX Runtime was built with the provider.
	InLibrary bool `json:"in_library"`
	// Runs: a small model ran on it and gave the right answer.
	Runs bool `json:"runs"`
	// Detail says why it does not run, or on what it runs.
	Detail string `json:"detail"`
}

// CheckProvider opens a small model on provider p (with opts) and runs it once, checking the
// answer. It tells apart a provider the library lacks from one that is there but cannot run
// here (no device, a driver it refuses).
func CheckProvider(p Provider, opts ...Option) ProviderStatus {
	st := ProviderStatus{Provider: p}
	if LibraryPath() == "" {
		st.Detail = "ONNX Runtime is not loaded"
		return st
	}
	if p == CUDA || p == TensorRT || p == OpenVINO {
		if err := providerLibraryPresent(p); err != nil {
			st.Detail = err.Error()
			return st
		}
	}
	err := runProbeModel(append(slices.Clone(opts), func(o *Options) error { o.Provider = p; return nil }))
	st.Runs = err == nil
	st.InLibrary = err == nil || !strings.Contains(err.Error(), "is not available in the loaded ONNX Runtime")
	if err != nil {
		st.Detail = err.Error()
	}
	return st
}

// runProbeModel runs y = x·W on a 4x4 matrix and checks the result.
func runProbeModel(opts []Option) error {
	g := onnxgraph.New("fksteer-probe", 17)
	x := g.Input("x", onnxgraph.Float32, onnxgraph.Fixed(1), onnxgraph.Fixed(4))
	w := make([]float32, 16)
	for i := range w {
		w[i] = float32(i%5) - 1.5
	}
	y := g.Op("MatMul", []string{x, g.Initializer("w", []int64{4, 4}, w)})
	g.Node("Identity", []string{y}, []string{g.Output("y", onnxgraph.Float32, onnxgraph.Fixed(1), onnxgraph.Fixed(4))})
	model, err := g.Marshal()
	if err != nil {
		return err
	}
	s, err := OpenBytes("provider probe", model, opts...)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := s.NewCall(Shapes{"x": {1, 4}})
	if err != nil {
		return err
	}
	defer c.Close()
	in, _ := c.Float32("x")
	copy(in, []float32{1, 2, 3, 4})
	if err := c.Run(context.Background()); err != nil {
		return err
	}
	out, _, err := c.Output("y")
	if err != nil {
		return err
	}
	for j := range 4 {
		var want float32
		for i := range 4 {
			want += in[i] * w[i*4+j]
		}
		if math.Abs(float64(out[j]-want)) > 1e-4 {
			return fmt.Errorf("the provider computed %v for the probe model, want %v", out[j], want)
		}
	}
	return nil
}

// AutoChoice is what [Auto] resolved to in this process, and why.
type AutoChoice struct {
	Provider Provider `json:"provider"`
	Reason   string   `json:"reason"`
}

var auto struct {
	once   sync.Once
	choice AutoChoice
}

// ChooseAuto resolves [Auto] once per process: CUDA, then TensorRT, when the library has them
// and a device runs the probe model; else WebGPU when Vulkan shows a hardware GPU and the probe
// model runs on it; else the CPU. A software Vulkan device (lavapipe, SwiftShader) is never
// chosen: it runs shaders on the same cores, slower than the CPU provider. [Init] must have
// succeeded first.
func ChooseAuto() AutoChoice {
	auto.once.Do(func() { auto.choice = chooseAuto() })
	return auto.choice
}

func chooseAuto() AutoChoice {
	var why []string
	for _, p := range []Provider{CUDA, TensorRT} {
		st := CheckProvider(p)
		if st.Runs {
			return AutoChoice{p, fmt.Sprintf("the ONNX Runtime library has %s and a device ran the probe model", p)}
		}
		if st.InLibrary {
			why = append(why, fmt.Sprintf("%s is in the library but did not run (%s)", p, firstLine(st.Detail)))
		}
	}
	r := vulkan.Probe()
	hw := r.Hardware()
	switch {
	case r.Err != nil:
		why = append(why, "no WebGPU adapter: "+r.Err.Error())
	case len(hw) == 0:
		names := make([]string, len(r.Devices))
		for i, d := range r.Devices {
			names[i] = d.Name
		}
		why = append(why, "the only Vulkan devices are software renderers ("+strings.Join(names, ", ")+"), slower than the CPU provider (--provider webgpu uses them anyway)")
	default:
		st := CheckProvider(WebGPU)
		if st.Runs {
			return AutoChoice{WebGPU, fmt.Sprintf("WebGPU runs on %s (%s, %s)", hw[0].Name, hw[0].TypeName, hw[0].Vendor)}
		}
		why = append(why, fmt.Sprintf("WebGPU did not run on %s: %s", hw[0].Name, firstLine(st.Detail)))
	}
	if len(why) == 0 {
		why = append(why, "no accelerator found")
	}
	return AutoChoice{CPU, strings.Join(why, "; ")}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
