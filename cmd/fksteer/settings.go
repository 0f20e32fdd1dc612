package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	def   any // typed default: string, int, float64, bool, uint64 or []string (a repeatable flag)
	usage string
	// modelDefault marks keys whose absence means "the model's recommended value"; they have no
	// viper default, so viper.IsSet tells whether the user chose one.
	modelDefault bool
	// perItem marks keys a batch item may override (its "overrides" object).
	perItem bool
	// sdOnly marks options of Stable Diffusion exports, refused for other models.
	sdOnly bool
}

// settingGroup is a table of settings with the heading `config show` and the example file use.
type settingGroup struct {
	name     string
	settings []setting
}

// globalSettings apply to every command.
var globalSettings = []setting{
	{key: "ort-lib", def: "", usage: "ONNX Runtime shared library (default: $FKSTEER_ORT_LIB, then the cache, then system paths)"},
	{key: "provider", def: "auto", usage: "execution provider: auto (the fastest that runs here: cuda or tensorrt, else webgpu on a hardware GPU, else cpu), cpu, webgpu, cuda, tensorrt, coreml, directml, openvino"},
	{key: "provider-option", def: []string{}, usage: "execution provider option key=value, repeatable or comma-separated (webgpu: preferredLayout=NHWC, enableGraphCapture=1, ...; cuda: ONNX Runtime's CUDA options); qualify a key with a provider (webgpu.preferredLayout=NHWC) to apply it only there"},
	{key: "device", def: 0, usage: "GPU device id for the cuda and tensorrt providers"},
	{key: "threads", def: 0, usage: "ONNX Runtime intra-op threads (0 = its choice; at most 4 × the cores: more only slow it down)"},
	{key: "log-level", def: "info", usage: "log level: debug, info, warn, error"},
	{key: "max-steps", def: maxSteps, usage: "largest --steps accepted (a guard against a mistyped number that would run for days)"},
	{key: "max-particles", def: maxParticles, usage: "largest --particles (export: --samples) per image accepted"},
	{key: "max-prompt-chars", def: maxPromptChars, usage: "longest prompt accepted, in characters (text encoders read the first 77 tokens)"},
	{key: "max-threads", def: 0, usage: "largest --threads accepted (0 = 4 x the cores: more threads than cores only slow ONNX Runtime down)"},
	{key: "memory-check", def: true, usage: "refuse a run whose estimated memory (a floor: model activations come on top) exceeds what is available"},
	{key: "max-image-pixels", def: 50_000_000, usage: "largest image fksteer decodes (score's images, init images, reward references), in pixels (width x height): the header is read first, so a small file that decodes to gigabytes is refused (0 = no limit)"},
}

// samplingSettings are the keys of a generation run, shared by generate and batch.
var samplingSettings = []setting{
	{key: "model", def: "glyphs", usage: "model: glyphs (built in), a name that 'fksteer models list' shows, or a manifest .yaml"},
	{key: "class", def: -1, usage: "class id for class-conditional models (overrides the prompt; -1 = from the prompt)", perItem: true},
	{key: "negative-prompt", def: "", usage: "negative prompt: the unconditional side of guidance (Stable Diffusion); refused by models that take none when guidance > 1"},
	{key: "steps", def: 0, usage: "sampling steps, at most 10000 (default: the model's)", modelDefault: true, perItem: true},
	{key: "seed", def: uint64(0), usage: "seed of the first image; image i uses seed+i (batch: the base of every item's seed)"},
	{key: "guidance", def: 0.0, usage: "classifier-free guidance scale, off at <= 1 (default: the model's)", modelDefault: true, perItem: true},
	{key: "sampler", def: "", usage: "step rule: euler, ddim, ddpm, euler-a, flow-sde (Flow-GRPO's SDE step, the last step too), flow-sde-clean (flow-sde with a last step onto the clean prediction) (default: the model's)", modelDefault: true, perItem: true},
	{key: "eta", def: 0.0, usage: "noise of ddim/euler-a (0 deterministic, 1 DDPM-like); flow-sde's noise level, Flow-GRPO's 0.7 when neither this nor the model sets one (default: the model's)", modelDefault: true, perItem: true},
	{key: "num-images", def: 1, usage: "number of images (batch: per item)", perItem: true},
	{key: "out", def: "out", usage: "output folder"},
	{key: "json", def: false, usage: "print the result as JSON"},
	{key: "contact-sheet", def: false, usage: "also write, per image, a contact sheet of every particle at each resampling step with lines to its parent, and a grid of the final images"},
	{key: "method", def: "", usage: "steering: base (independent samples), bon (best-of-N), fk (Feynman-Kac), svdd, beam, dts, dts-star, noise, random (docs/methods.md) (default: base without a reward; with one, svdd, or noise on a deterministic sampler)", perItem: true},
	{key: "particles", def: 1, usage: "particles per image (K), at most 10000: bon's, fk's and svdd's particles, beam's beams, the samples dts, dts-star, noise and random return; a run whose estimated memory exceeds what is available is refused", perItem: true},
	{key: "budget", def: 0, usage: "compute per image in NFE (denoiser rows, a guided row counting 2); sizes the method: K for base, bon, fk and beam, svdd's candidates, noise's rounds, random's noises, dts's iterations (0 = use the settings as given)", perItem: true},
	{key: "candidates", def: 0, usage: "svdd: candidates per particle per step (M, default 4); beam: children per beam at a branch step (C, default 2)", perItem: true},
	{key: "alpha", def: 0.0, usage: "svdd: candidate temperature (0 = keep the best; > 0 draws one in proportion to exp(reward/alpha))", perItem: true},
	{key: "beam-every", def: 0, usage: "beam: branch every n steps (default 1)", perItem: true},
	{key: "neighbours", def: 0, usage: "noise, random: noises solved per round (default 4)", perItem: true},
	{key: "rounds", def: 0, usage: "noise: search rounds, the first a random search (default 4)", perItem: true},
	{key: "noise-scale", def: 0.0, usage: "noise: step from the pivot, s in x_T + s*eps (default 0.5)", perItem: true},
	{key: "iterations", def: 0, usage: "dts, dts-star: tree descents per image (default 16, or what --budget pays for)", perItem: true},
	{key: "widening", def: 0.0, usage: "dts, dts-star: progressive widening exponent a in (0, 1], ceil((N+1)^a) children after N visits (default 1 for dts, 0.5 for dts-star)", perItem: true},
	{key: "exploration", def: 0.0, usage: "dts-star: UCT exploration constant c (default 1)", perItem: true},
	{key: "reward", def: "", usage: "reward spec name:key=value,..., e.g. classifier:model=m.onnx,target=3 or color:target=#cc2222", perItem: true},
	{key: "potential", def: "diff", usage: "FK potential: diff, max, sum, immediate", perItem: true},
	{key: "lambda", def: 10.0, usage: "FK potential scale lambda; dts's and dts-star's inverse temperature", perItem: true},
	{key: "lambda-start", def: 0.0, usage: "ramp lambda up from this value over the evaluation steps (0 = constant lambda)", perItem: true},
	{key: "lambda-ramp", def: "constant", usage: "lambda schedule over the evaluation steps: constant, linear, exponential", perItem: true},
	{key: "resample-every", def: 0, usage: "FK: evaluate potentials every n steps (0 = steps/20, at least 1)", perItem: true},
	{key: "resample-start", def: -1, usage: "FK: first evaluation step, 0-based (-1 = the interval)", perItem: true},
	{key: "resample-end", def: -1, usage: "FK: last intermediate evaluation step (-1 = 60% of the steps)", perItem: true},
	{key: "ess-threshold", def: 0.0, usage: "FK: resample only when ESS < threshold*K (0 = at every evaluation)", perItem: true},
	{key: "resampler", def: "systematic", usage: "resampling scheme: systematic, stratified, multinomial, residual", perItem: true},
	{key: "select", def: "", usage: "outputs per image: best, all, sample (default: all for base, best otherwise)", perItem: true},
	{key: "scheduler", def: "", usage: "Stable Diffusion: ddim, ddpm, pndm, euler, euler-a, dpm++2m, lcm (default: the export's scheduler_config.json)", sdOnly: true},
	{key: "width", def: 0, usage: "Stable Diffusion: image width in pixels, a multiple of 8 (default: the UNet's sample size)", sdOnly: true},
	{key: "height", def: 0, usage: "Stable Diffusion: image height in pixels, a multiple of 8 (default: the UNet's sample size)", sdOnly: true},
	{key: "guidance-rescale", def: 0.0, usage: "Stable Diffusion: guidance rescale phi in [0, 1] (0 = off; 0.7 suits v-prediction models)", sdOnly: true},
	{key: "preview-decoder", def: "", usage: "Stable Diffusion: small ONNX decoder (TAESD-style) for the intermediate rewards of steering", sdOnly: true},
	{key: "init-image", def: "", usage: "Stable Diffusion: start from this image (image-to-image); --strength says how much of it is redrawn", perItem: true},
	{key: "strength", def: 0.8, usage: "image-to-image: share of the steps redrawn, in (0, 1] (1 = ignore the image's content)", perItem: true},
}

// generateSettings are generate's own keys.
var generateSettings = []setting{
	{key: "prompt", def: "", usage: "prompt; empty means unconditional"},
	{key: "batch-size", def: 8, usage: "images sampled together in one model batch (each with all its particles)"},
}

// batchSettings are batch's own keys.
var batchSettings = []setting{
	{key: "prompts", def: "", usage: "items file: one prompt per line, or JSONL (.jsonl) with prompt, id, seed, negative_prompt, overrides, references"},
	{key: "workers", def: 0, usage: "items generated at once (0 = one per core, as many as fit in memory)"},
	{key: "shard", def: "", usage: "run shard INDEX/COUNT of the items (0-based; default: from Kubernetes or Slurm array variables, else all)"},
	{key: "overwrite", def: false, usage: "replace what is in the way instead of refusing: batch items finished with other settings (regenerated), a generate run's images of the same seeds and other settings, and files in --out that fksteer did not write"},
	{key: "max-failures", def: 10, usage: "stop starting items once more than this many failed (-1 = never stop)"},
	{key: "progress", def: "auto", usage: "progress display: auto (a bar on a terminal; otherwise log lines in batch, nothing in generate), bar, log, off"},
}

// serveSettings are serve's own keys.
var serveSettings = []setting{
	{key: "listen", def: "127.0.0.1:7860", usage: "address to serve on; any address but loopback requires --api-key"},
	{key: "api-key", def: "", usage: "require Authorization: Bearer <key> on every route but /healthz (set it through FKSTEER_API_KEY rather than the command line, which other users can read)"},
	{key: "allow-path", def: []string{}, usage: "folder whose files requests may name as models, reward models or references (repeatable); otherwise requests name only configured, catalog and built-in models"},
	{key: "queue-size", def: 16, usage: "jobs that may wait; a request beyond them gets 429 with Retry-After"},
	{key: "concurrency", def: 1, usage: "jobs that run at once"},
	{key: "per-model", def: 1, usage: "jobs that may use one model at once"},
	{key: "job-timeout", def: 1800, usage: "seconds a job may run before it is cancelled"},
	{key: "max-request-mib", def: 64, usage: "largest request body in MiB (base64 images for the reward server)"},
	{key: "max-request-images", def: 16, usage: "images one generation request may ask for (n, batch_size x n_iter)"},
	{key: "max-request-particles", def: 64, usage: "particles (K) one request may ask for"},
	{key: "max-request-steps", def: 200, usage: "steps one request may ask for"},
	{key: "model-memory", def: 0, usage: "MiB of model files kept open (0 = every model stays open): opening one more closes the least recently used models no job is using"},
	{key: "shutdown-grace", def: 30, usage: "seconds the accepted jobs (running or queued) may take to finish on SIGTERM before what remains is cancelled"},
}

// tokenizeSettings are tokenize's own keys.
var tokenizeSettings = []setting{
	{key: "tokenizer", def: "", usage: "CLIP tokenizer folder (vocab.json, merges.txt); default: the --model export's tokenizer/"},
}

// modelSettings are the keys of `fksteer models`.
var modelSettings = []setting{
	{key: "download-mirror", def: "", usage: "fetch model downloads through this HTTP mirror (<mirror>/<host>/<path>) instead of their hosts"},
	{key: "download-timeout", def: 60, usage: "seconds a download waits on a silent host (to connect, for its response, for the next bytes) before retrying; raise it for a slow mirror"},
}

// modelsKey is the one key that only a config file can set: a map from model names to manifest
// files (relative to the config file), listed by `fksteer models list` and usable as --model.
const modelsKey = "models"

// rewardsKey is the other config-file-only map: reward names to reward specs, the rewards a
// request to fksteer serve may name (docs/server.md).
const rewardsKey = "rewards"

// groups lists every setting, in the order `config show` and the example file present them.
var groups = []settingGroup{
	{"global", globalSettings},
	{"sampling (generate and batch)", samplingSettings},
	{"generate", generateSettings},
	{"batch", batchSettings},
	{"serve", serveSettings},
	{"tokenize", tokenizeSettings},
	{"models", modelSettings},
}

// envNotKeys are the FKSTEER_ variables that are not configuration keys.
var envNotKeys = map[string]string{
	"FKSTEER_CACHE":     "the cache folder",
	"FKSTEER_CONFIG":    "the config file, when --config is not given",
	"FKSTEER_SHARED":    "the shared test data folder (tests only)",
	"FKSTEER_TEST_MAIN": "tests only",
}

// envPrefix prefixes every key's environment variable.
const envPrefix = "FKSTEER_"

func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// lookup returns the declared setting named key.
func lookup(key string) (setting, bool) {
	for _, g := range groups {
		for _, s := range g.settings {
			if s.key == key {
				return s, true
			}
		}
	}
	return setting{}, false
}

// mustLookup returns the declared setting named key; key must be declared.
func mustLookup(key string) setting {
	s, ok := lookup(key)
	if !ok {
		panic("undeclared setting " + key)
	}
	return s
}

func allKeys() []string {
	var out []string
	for _, g := range groups {
		for _, s := range g.settings {
			out = append(out, s.key)
		}
	}
	return out
}

// addFlags registers settings as flags of fs. Flags are bound to viper only for the command
// that runs (bindFlags), because several commands declare the same keys and viper keeps one
// flag per key.
func addFlags(fs *pflag.FlagSet, settings []setting) {
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
		case []string:
			fs.StringArray(s.key, d, s.usage)
		default:
			panic(fmt.Sprintf("setting %s: unsupported default type %T", s.key, s.def))
		}
	}
}

// bindFlags binds the running command's flags (its own and inherited) to their keys.
func bindFlags(v *viper.Viper, fs *pflag.FlagSet) error {
	for _, key := range allKeys() {
		if f := fs.Lookup(key); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// newViper returns a viper with every key's default that reads FKSTEER_* environment variables.
func newViper() *viper.Viper {
	v := viper.New()
	v.SetEnvPrefix(strings.TrimSuffix(envPrefix, "_"))
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	for _, g := range groups {
		for _, s := range g.settings {
			if !s.modelDefault {
				v.SetDefault(s.key, s.def)
			}
		}
	}
	return v
}

// configFile says which config file applies: --config, else $FKSTEER_CONFIG, else
// ./fksteer.yaml when it exists, else none ("").
func configFile(flag string) string {
	switch {
	case flag != "":
		return flag
	case os.Getenv("FKSTEER_CONFIG") != "":
		return os.Getenv("FKSTEER_CONFIG")
	case fileExists("fksteer.yaml"):
		return "fksteer.yaml"
	}
	return ""
}

// readConfigFile loads path into v, rejecting keys that no setting declares with an error that
// names the closest valid one.
func readConfigFile(v *viper.Viper, path string) error {
	if path == "" {
		return nil
	}
	if !fileExists(path) {
		return usageError{fmt.Errorf("config file %s does not exist", path)}
	}
	v.SetConfigFile(path)
	v.SetConfigType("yaml") // whatever the file is called: fksteer's config is YAML
	if err := v.ReadInConfig(); err != nil {
		var perr viper.ConfigParseError
		if errors.As(err, &perr) {
			// yaml lists its unmarshal errors one per line; an error message is one line.
			msg := strings.Join(strings.Fields(perr.Unwrap().Error()), " ")
			return fmt.Errorf("read config %s: not a YAML map of settings (one key: value per line): %s", path, msg)
		}
		return fmt.Errorf("read config %s: %w", path, err)
	}
	if _, ok := v.Get(modelsKey).(map[string]any); v.InConfig(modelsKey) && !ok {
		return fmt.Errorf("config %s: %s must map model names to manifest files", path, modelsKey)
	}
	if _, ok := v.Get(rewardsKey).(map[string]any); v.InConfig(rewardsKey) && !ok {
		return fmt.Errorf("config %s: %s must map reward names to reward specs", path, rewardsKey)
	}
	valid := append(allKeys(), modelsKey, rewardsKey)
	for _, k := range v.AllKeys() {
		if !v.InConfig(k) {
			continue
		}
		if top, _, _ := strings.Cut(k, "."); top == modelsKey || top == rewardsKey {
			continue // model and reward names are the user's own
		}
		if _, ok := lookup(k); !ok {
			err := &keys.UnknownKeyError{Key: k, Suggestion: keys.Closest(k, valid), Valid: valid}
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return nil
}

// checkEnv rejects FKSTEER_ variables that name no key, so that FKSTEER_STPES=3 is an error
// naming FKSTEER_STEPS instead of a silently ignored setting.
func checkEnv(environ []string) error {
	var valid []string
	for _, k := range allKeys() {
		valid = append(valid, envName(k))
	}
	for name := range envNotKeys {
		valid = append(valid, name)
	}
	var bad []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || slices.Contains(valid, name) {
			continue
		}
		bad = append(bad, name)
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	name := bad[0]
	for _, key := range []string{modelsKey, rewardsKey} {
		if name == envName(key) {
			return usageError{fmt.Errorf("environment variable %s: the %s map can only be set in a config file", name, key)}
		}
	}
	shown := name
	if q := strconv.Quote(name); q[1:len(q)-1] != name { // a newline in a name would break the message
		shown = q
	}
	msg := fmt.Sprintf("environment variable %s names no fksteer setting", shown)
	if s := keys.Closest(name, valid); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return usageError{errors.New(msg + "; unset it, or see `fksteer config show` for the settings")}
}

// configuredRewards returns the config file's map of reward names to specs.
func configuredRewards(v *viper.Viper) map[string]string {
	return v.GetStringMapString(rewardsKey)
}

// configuredModels returns the config file's model map with manifest paths resolved against the
// config file's folder.
func configuredModels(v *viper.Viper) map[string]string {
	m := v.GetStringMapString(modelsKey)
	if len(m) == 0 {
		return nil
	}
	dir := filepath.Dir(v.ConfigFileUsed())
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	out := make(map[string]string, len(m))
	for name, path := range m {
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		out[name] = path
	}
	return out
}
