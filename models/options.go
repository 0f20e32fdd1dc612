package models

import (
	"fmt"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Provider names an ONNX Runtime execution provider.
type Provider string

// The execution providers fksteer can ask for. Only CPU is in the official Linux build that
// scripts/install-ort.sh installs; the others need a library built with them.
const (
	CPU      Provider = "cpu"
	CUDA     Provider = "cuda"
	TensorRT Provider = "tensorrt"
	CoreML   Provider = "coreml"
	DirectML Provider = "directml"
	OpenVINO Provider = "openvino"
)

var providers = []Provider{CPU, CUDA, TensorRT, CoreML, DirectML, OpenVINO}

// ParseProvider turns a user's provider name into a Provider.
func ParseProvider(s string) (Provider, error) {
	p := Provider(strings.ToLower(strings.TrimSpace(s)))
	if p == "" {
		return CPU, nil
	}
	for _, q := range providers {
		if p == q {
			return p, nil
		}
	}
	return "", fmt.Errorf("unknown execution provider %q (valid: %s)", s, joinProviders())
}

func joinProviders() string {
	names := make([]string, len(providers))
	for i, p := range providers {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

// OptLevel is ONNX Runtime's graph optimisation level.
type OptLevel string

// Graph optimisation levels, as ONNX Runtime names them.
const (
	OptDisabled OptLevel = "disabled"
	OptBasic    OptLevel = "basic"
	OptExtended OptLevel = "extended"
	OptAll      OptLevel = "all"
)

// ParseOptLevel turns a user's level name into an OptLevel.
func ParseOptLevel(s string) (OptLevel, error) {
	switch l := OptLevel(strings.ToLower(strings.TrimSpace(s))); l {
	case "":
		return OptAll, nil
	case OptDisabled, OptBasic, OptExtended, OptAll:
		return l, nil
	}
	return "", fmt.Errorf("unknown graph optimisation level %q (valid: disabled, basic, extended, all)", s)
}

// Options configure a session. Build them with [Defaults] and Option functions; the zero value
// is also valid and means the same as Defaults.
type Options struct {
	Provider Provider
	DeviceID int
	// IntraOpThreads and InterOpThreads are ONNX Runtime's thread-pool sizes; 0 lets it choose.
	IntraOpThreads int
	InterOpThreads int
	OptLevel       OptLevel
}

// Defaults are CPU, thread counts chosen by ONNX Runtime, and every graph optimisation.
func Defaults() Options { return Options{Provider: CPU, OptLevel: OptAll} }

// Option changes Options and reports a bad value as an error.
type Option func(*Options) error

// WithProvider selects the execution provider by name ("cpu", "cuda", ...) and device.
func WithProvider(name string, deviceID int) Option {
	return func(o *Options) error {
		p, err := ParseProvider(name)
		if err != nil {
			return err
		}
		if deviceID < 0 {
			return fmt.Errorf("device id %d is negative", deviceID)
		}
		o.Provider, o.DeviceID = p, deviceID
		return nil
	}
}

// WithThreads sets the intra-op and inter-op thread counts (0 = ONNX Runtime's choice).
func WithThreads(intra, inter int) Option {
	return func(o *Options) error {
		if intra < 0 || inter < 0 {
			return fmt.Errorf("thread counts must not be negative (got intra %d, inter %d)", intra, inter)
		}
		o.IntraOpThreads, o.InterOpThreads = intra, inter
		return nil
	}
}

// WithOptLevel sets the graph optimisation level by name.
func WithOptLevel(name string) Option {
	return func(o *Options) error {
		l, err := ParseOptLevel(name)
		if err != nil {
			return err
		}
		o.OptLevel = l
		return nil
	}
}

// WithOptions replaces all options at once, for callers that build Options from configuration.
func WithOptions(opts Options) Option {
	return func(o *Options) error { *o = opts; return nil }
}

func buildOptions(opts []Option) (Options, error) {
	o := Defaults()
	for _, f := range opts {
		if err := f(&o); err != nil {
			return o, err
		}
	}
	if o.Provider == "" {
		o.Provider = CPU
	}
	if o.OptLevel == "" {
		o.OptLevel = OptAll
	}
	return o, nil
}

// sessionOptions turns Options into ONNX Runtime's. The caller destroys the result.
func (o Options) sessionOptions() (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("create session options: %w", err)
	}
	if err := o.apply(so); err != nil {
		so.Destroy()
		return nil, err
	}
	return so, nil
}

func (o Options) apply(so *ort.SessionOptions) error {
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return fmt.Errorf("set intra-op threads: %w", err)
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return fmt.Errorf("set inter-op threads: %w", err)
		}
	}
	level := map[OptLevel]ort.GraphOptimizationLevel{
		OptDisabled: ort.GraphOptimizationLevelDisableAll,
		OptBasic:    ort.GraphOptimizationLevelEnableBasic,
		OptExtended: ort.GraphOptimizationLevelEnableExtended,
		OptAll:      ort.GraphOptimizationLevelEnableAll,
	}[o.OptLevel]
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return fmt.Errorf("set graph optimisation level: %w", err)
	}
	if err := o.appendProvider(so); err != nil {
		return fmt.Errorf("execution provider %q is not available in the loaded ONNX Runtime library %s (use a build with it, pointed to by %s, or --provider cpu): %w",
			o.Provider, LibraryPath(), LibraryEnv, err)
	}
	return nil
}

func (o Options) appendProvider(so *ort.SessionOptions) error {
	dev := strconv.Itoa(o.DeviceID)
	switch o.Provider {
	case CPU:
		return nil
	case CUDA:
		cu, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer cu.Destroy()
		if err := cu.Update(map[string]string{"device_id": dev}); err != nil {
			return err
		}
		return so.AppendExecutionProviderCUDA(cu)
	case TensorRT:
		trt, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return err
		}
		defer trt.Destroy()
		if err := trt.Update(map[string]string{"device_id": dev}); err != nil {
			return err
		}
		return so.AppendExecutionProviderTensorRT(trt)
	case CoreML:
		return so.AppendExecutionProviderCoreMLV2(map[string]string{})
	case DirectML:
		return so.AppendExecutionProviderDirectML(o.DeviceID)
	case OpenVINO:
		return so.AppendExecutionProviderOpenVINO(map[string]string{})
	}
	return fmt.Errorf("unknown execution provider %q (valid: %s)", o.Provider, joinProviders())
}
