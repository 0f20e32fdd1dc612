package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/fksteer/fksteer/internal/keys"
)

// setting is one configuration key. The same name is the command-line flag, the YAML key, and
// (upper-cased, '-' -> '_', prefixed FKSTEER_) the environment variable. Every key fksteer reads
// is declared in this file and nowhere else.
type setting struct {
	key   string
	def   any // typed default: string, int, float64, bool or uint64
	usage string
	// modelDefault marks keys whose absence means "the model's recommended value"; they have no
	// viper default, so viper.IsSet tells whether the user chose one.
	modelDefault bool
}

// globalSettings apply to every command.
var globalSettings = []setting{
	{key: "ort-lib", def: "", usage: "ONNX Runtime shared library (default: $FKSTEER_ORT_LIB, then the cache, then system paths)"},
	{key: "provider", def: "cpu", usage: "execution provider: cpu, cuda, tensorrt, coreml, directml, openvino"},
	{key: "device", def: 0, usage: "GPU device id for GPU execution providers"},
	{key: "threads", def: 0, usage: "ONNX Runtime intra-op threads (0 = its choice)"},
	{key: "log-level", def: "info", usage: "log level: debug, info, warn, error"},
}

// generateSettings are the keys of a generation run (generate, and later batch).
var generateSettings = []setting{
	{key: "model", def: "glyphs", usage: "model: glyphs (built in), or a manifest .yaml"},
	{key: "prompt", def: "", usage: "prompt; empty means unconditional"},
	{key: "class", def: -1, usage: "class id for class-conditional models (overrides the prompt; -1 = from the prompt)"},
	{key: "steps", def: 0, usage: "sampling steps (default: the model's)", modelDefault: true},
	{key: "seed", def: uint64(0), usage: "seed of the first image; image i uses seed+i"},
	{key: "guidance", def: 0.0, usage: "classifier-free guidance scale, off at <= 1 (default: the model's)", modelDefault: true},
	{key: "sampler", def: "", usage: "step rule: euler, ddim, ddpm, euler-a, flow-sde (default: the model's)", modelDefault: true},
	{key: "eta", def: 0.0, usage: "noise of ddim/euler-a (0 deterministic, 1 DDPM-like); flow-sde's noise level (default: the model's)", modelDefault: true},
	{key: "num-images", def: 1, usage: "number of images"},
	{key: "batch-size", def: 8, usage: "images sampled together in one model batch (each with all its particles)"},
	{key: "out", def: "out", usage: "output folder"},
	{key: "json", def: false, usage: "print the result as JSON"},
	{key: "method", def: "base", usage: "steering: base (independent samples), bon (best-of-N), fk (Feynman-Kac)"},
	{key: "particles", def: 1, usage: "particles per image (K)"},
	{key: "reward", def: "", usage: "reward spec name:key=value,..., e.g. classifier:model=m.onnx,target=3 or color:target=#cc2222"},
	{key: "potential", def: "diff", usage: "FK potential: diff, max, sum, immediate"},
	{key: "lambda", def: 10.0, usage: "FK potential scale lambda"},
	{key: "lambda-start", def: 0.0, usage: "ramp lambda up from this value over the evaluation steps (0 = constant lambda)"},
	{key: "lambda-ramp", def: "constant", usage: "lambda schedule over the evaluation steps: constant, linear, exponential"},
	{key: "resample-every", def: 5, usage: "FK: evaluate potentials every n steps"},
	{key: "resample-start", def: 5, usage: "FK: first evaluation step (0-based)"},
	{key: "resample-end", def: -1, usage: "FK: last intermediate evaluation step (-1 = 60% of the steps)"},
	{key: "ess-threshold", def: 0.0, usage: "FK: resample only when ESS < threshold*K (0 = at every evaluation)"},
	{key: "resampler", def: "systematic", usage: "resampling scheme: systematic, stratified, multinomial, residual"},
	{key: "select", def: "", usage: "outputs per image: best, all, sample (default: all for base, best otherwise)"},
}

// bindSettings registers settings as flags of fs and binds them in v.
func bindSettings(v *viper.Viper, fs *pflag.FlagSet, settings []setting) {
	for _, s := range settings {
		switch d := s.def.(type) {
		case string:
			fs.String(s.key, d, s.usage)
		case int:
			fs.Int(s.key, d, s.usage)
		case uint64:
			fs.Uint64(s.key, d, s.usage)
		case float64:
			fs.Float64(s.key, d, s.usage)
		case bool:
			fs.Bool(s.key, d, s.usage)
		default:
			panic(fmt.Sprintf("setting %s: unsupported default type %T", s.key, s.def))
		}
		if !s.modelDefault {
			v.SetDefault(s.key, s.def)
		}
		if err := v.BindPFlag(s.key, fs.Lookup(s.key)); err != nil {
			panic(err)
		}
	}
}

// newViper returns a viper that reads FKSTEER_* environment variables for every key.
func newViper() *viper.Viper {
	v := viper.New()
	v.SetEnvPrefix("FKSTEER")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	return v
}

// readConfigFile loads path (or ./fksteer.yaml when path is empty and that file exists) into v,
// rejecting keys that no setting declares.
func readConfigFile(v *viper.Viper, path string) error {
	if path == "" {
		if !fileExists("fksteer.yaml") {
			return nil
		}
		path = "fksteer.yaml"
	}
	v.SetConfigFile(path)
	if err := v.ReadInConfig(); err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	known := map[string]bool{}
	for _, set := range [][]setting{globalSettings, generateSettings} {
		for _, s := range set {
			known[s.key] = true
		}
	}
	var valid []string
	for k := range known {
		valid = append(valid, k)
	}
	for _, k := range v.AllKeys() {
		if !known[k] && v.InConfig(k) {
			err := &keys.UnknownKeyError{Key: k, Suggestion: keys.Closest(k, valid), Valid: valid}
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return nil
}
