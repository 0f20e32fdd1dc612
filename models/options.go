package models

import (
	"fmt"
	"maps"
	goruntime "runtime"
	"strconv"
	"sync/atomic"

	"github.com/fksteer/fksteer/internal/enum"
	ort "github.com/yalue/onnxruntime_go"
)

// Provider names an ONNX Runtime execution provider.
type Provider string

// The execution providers fksteer can ask for. The official Linux build that
// scripts/install-ort.sh installs has CPU and WebGPU (Dawn over Vulkan); the others need a
// library built with them. Auto is not a provider but the request to pick the fastest one this
// library and machine can run ([ChooseAuto]).
const (
	Auto     Provider = "auto"
	CPU      Provider = "cpu"
	WebGPU   Provider = "webgpu"
	CUDA     Provider = "cuda"
	TensorRT Provider = "tensorrt"
	CoreML   Provider = "coreml"
	DirectML Provider = "directml"
	OpenVINO Provider = "openvino"
)

var providers = []Provider{Auto, CPU, WebGPU, CUDA, TensorRT, CoreML, DirectML, OpenVINO}

// ParseProvider turns a user's provider name into a Provider, by [enum.Parse]'s rule
// (case-insensitive, surrounding space ignored). The empty name is CPU, what a zero [Options]
// has always meant.
func ParseProvider(s string) (Provider, error) {
	return enum.ParseAliases("execution provider", s, map[string]Provider{"": CPU}, providers...)
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

// ParseOptLevel turns a user's level name into an OptLevel, by [enum.Parse]'s rule. The empty
// name is OptAll, as in [Defaults].
func ParseOptLevel(s string) (OptLevel, error) {
	return enum.ParseAliases("graph optimisation level", s, map[string]OptLevel{"": OptAll}, OptDisabled, OptBasic, OptExtended, OptAll)
}

// Options configure a session. Build them with [Defaults] and Option functions; the zero value
// is also valid and means the same as Defaults.
type Options struct {
	// Provider is the execution provider; Auto is resolved when a session is opened.
	Provider Provider
	DeviceID int
	// ProviderOptions are passed to the provider as they are (CUDA's and TensorRT's option
	// names, WebGPU's preferredLayout, enableGraphCapture, ...); see [CheckProviderOptions].
	ProviderOptions map[string]string
	// IntraOpThreads and InterOpThreads are ONNX Runtime's thread-pool sizes; 0 lets it choose.
	IntraOpThreads int
	InterOpThreads int
	OptLevel       OptLevel
	// ProfilePrefix, when set, makes ONNX Runtime profile every node of the session and write
	// the profile to PREFIX-<n>_<date>.json when the session closes (see [ReadProfiles]).
	ProfilePrefix string
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

// WithProviderOptions sets options passed through to the execution provider. A key may be
// qualified by a provider's name ("webgpu.preferredLayout", "cuda.cudnn_conv_algo_search"): it
// then applies only when that provider runs the session, so one configuration can carry options
// for several (useful with Auto). Keys are checked when a session is opened.
func WithProviderOptions(kv map[string]string) Option {
	return func(o *Options) error {
		o.ProviderOptions = maps.Clone(kv)
		return nil
	}
}

// WithProfiling makes sessions write ONNX Runtime's per-node profile to prefix-<n>_<date>.json when
// they close; "" turns it off.
func WithProfiling(prefix string) Option {
	return func(o *Options) error { o.ProfilePrefix = prefix; return nil }
}

// ThreadLimit is the most intra-op or inter-op threads [WithThreads] accepts: 4 × the cores
// this process may run on. ONNX Runtime's pools gain nothing past one thread per core, while
// every thread costs start-up time and memory in every session: on 2 cores, opening the glyphs
// model took 2.3 s with 2 threads, 13 s with 64 and 23 s with 128, and 100000 threads grew by
// ~50 MB/s for as long as anyone waited, deaf to SIGTERM inside ONNX Runtime. Four times the
// cores leaves room for SMT and for measuring oversubscription; a limit tied to the machine, not
// a fixed number, is what keeps the cost bounded on a laptop and a 384-thread server alike.
func ThreadLimit() int {
	if MaxThreads > 0 {
		return MaxThreads
	}
	return 4 * goruntime.NumCPU()
}

// MaxThreads replaces [ThreadLimit]'s 4 × the cores when positive, for a user who measured that
// more threads pay off on their machine.
var MaxThreads int

// WithThreads sets the intra-op and inter-op thread counts (0 = ONNX Runtime's choice). Counts
// above [ThreadLimit] are refused.
func WithThreads(intra, inter int) Option {
	return func(o *Options) error {
		if intra < 0 || inter < 0 {
			return fmt.Errorf("thread counts must not be negative (got intra %d, inter %d)", intra, inter)
		}
		if limit := ThreadLimit(); intra > limit || inter > limit {
			return fmt.Errorf("thread counts intra %d, inter %d: above the limit of %d (by default 4 × the %d cores here), where more threads only slow ONNX Runtime down", intra, inter, limit, goruntime.NumCPU())
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

// Resolve applies opts to [Defaults] as opening a session does: [Auto] becomes the provider it
// picks, the provider options are narrowed to that provider's and checked. Front ends call it
// once, to report a bad option before any model opens, and pass the result on with
// [WithOptions].
func Resolve(opts ...Option) (Options, error) { return buildOptions(opts) }

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
	auto := o.Provider == Auto
	if auto {
		o.Provider = ChooseAuto().Provider
	}
	o.ProviderOptions = OptionsFor(o.Provider, o.ProviderOptions)
	if auto && o.Provider == CPU {
		// Unqualified options were meant for the accelerator auto hoped for; its CPU fallback
		// must not fail on them.
		o.ProviderOptions = nil
	}
	if err := CheckProviderOptions(o.Provider, o.ProviderOptions); err != nil {
		return o, err
	}
	return o, nil
}

// profileSeq numbers profiled sessions, see apply.
var profileSeq atomic.Int64

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
	if o.ProfilePrefix != "" {
		// ONNX Runtime names the file after the prefix and the time in milliseconds: sessions
		// closed in the same millisecond would overwrite each other's profile.
		prefix := fmt.Sprintf("%s-%d", o.ProfilePrefix, profileSeq.Add(1))
		if err := so.EnableProfiling(prefix); err != nil {
			return fmt.Errorf("enable profiling: %w", err)
		}
	}
	if err := o.appendProvider(so); err != nil {
		return providerError(o.Provider, err)
	}
	return nil
}

func (o Options) appendProvider(so *ort.SessionOptions) error {
	dev := strconv.Itoa(o.DeviceID)
	kv := func(extra map[string]string) map[string]string {
		m := maps.Clone(o.ProviderOptions)
		if m == nil {
			m = map[string]string{}
		}
		for k, v := range extra {
			if _, set := m[k]; !set {
				m[k] = v
			}
		}
		return m
	}
	switch o.Provider {
	case CPU:
		return nil
	case WebGPU:
		prepareDawn()
		return so.AppendExecutionProvider("WebGPU", kv(nil))
	case CUDA:
		if err := providerLibraryPresent(CUDA); err != nil {
			return err
		}
		cu, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer cu.Destroy()
		if err := cu.Update(kv(map[string]string{"device_id": dev})); err != nil {
			return err
		}
		return so.AppendExecutionProviderCUDA(cu)
	case TensorRT:
		if err := providerLibraryPresent(TensorRT); err != nil {
			return err
		}
		trt, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return err
		}
		defer trt.Destroy()
		if err := trt.Update(kv(map[string]string{"device_id": dev})); err != nil {
			return err
		}
		return so.AppendExecutionProviderTensorRT(trt)
	case CoreML:
		return so.AppendExecutionProviderCoreMLV2(kv(nil))
	case DirectML:
		return so.AppendExecutionProviderDirectML(o.DeviceID)
	case OpenVINO:
		if err := providerLibraryPresent(OpenVINO); err != nil {
			return err
		}
		return so.AppendExecutionProviderOpenVINO(kv(nil))
	}
	// Auto ends here too: it must have been resolved before a session is opened.
	return &enum.Error{What: "execution provider", Value: string(o.Provider), Valid: enum.Names(providers...)}
}
