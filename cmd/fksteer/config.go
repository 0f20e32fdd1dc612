package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/fksteer/fksteer/internal/keys"
)

func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show the effective configuration, or an example config file"}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print every setting's effective value and where it came from (flag, environment, file, default)",
		Long: `Prints every configuration key with its effective value and its source. Precedence, highest
first: command-line flags, FKSTEER_* environment variables, the config file (--config,
$FKSTEER_CONFIG, or ./fksteer.yaml), defaults. Every key is also a flag of this command, so
'fksteer config show --steps 8' shows what 'fksteer generate --steps 8' would use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.configShow(cmd.Flags()) },
	}
	for _, g := range groups[1:] { // global keys are the root's persistent flags
		addFlags(show.Flags(), g.settings)
	}
	example := &cobra.Command{
		Use:   "example",
		Short: "Print a config file that documents every key (docs/fksteer.yaml)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := io.WriteString(a.stdout, exampleConfig())
			return err
		},
	}
	cmd.AddCommand(show, example)
	return cmd
}

// Sources of a value, as `config show` reports them.
const (
	fromFlag    = "flag"
	fromEnv     = "env"
	fromFile    = "file"
	fromDefault = "default"
	fromModel   = "unset" // a model-default key nobody set: the model's recommended value
)

// sourceOf says where key's effective value comes from, following viper's precedence.
func (a *app) sourceOf(fs *pflag.FlagSet, s setting) string {
	if f := fs.Lookup(s.key); f != nil && f.Changed {
		return fromFlag
	}
	if os.Getenv(envName(s.key)) != "" { // viper ignores empty variables
		return fromEnv
	}
	if a.v.InConfig(s.key) {
		return fromFile
	}
	if s.modelDefault {
		return fromModel
	}
	return fromDefault
}

// checkValues rejects environment and file values that do not parse as their key's type, which
// viper would otherwise read as zero (FKSTEER_STEPS=ten would become 0 steps), and values of any
// source outside their key's range (valueRanges), before any work starts. Every source that
// sets a key is checked, not only the one that wins: a broken variable or file is reported even
// on the run whose flag happens to override it, rather than on the next run that doesn't.
func (a *app) checkValues(fs *pflag.FlagSet) error {
	file, err := a.fileLayer()
	if err != nil {
		return err
	}
	for _, g := range groups {
		for _, s := range g.settings {
			if raw := os.Getenv(envName(s.key)); raw != "" { // viper ignores empty variables
				val, err := convert(raw, s.def)
				if err == nil {
					err = checkRange(s.key, val)
				}
				if err != nil {
					return usageError{fmt.Errorf("environment variable %s=%q: %w", envName(s.key), raw, err)}
				}
			}
			if file != nil && file.InConfig(s.key) {
				val, err := convert(file.Get(s.key), s.def)
				if err == nil {
					err = checkRange(s.key, val)
				}
				if err != nil {
					return usageError{fmt.Errorf("config %s: %s: %w", a.v.ConfigFileUsed(), s.key, err)}
				}
			}
			if f := fs.Lookup(s.key); f != nil && f.Changed {
				val, _ := convert(a.v.Get(s.key), s.def) // the flag parser has typed it
				if err := checkRange(s.key, val); err != nil {
					return usageError{fmt.Errorf("--%s: %w", s.key, err)}
				}
			}
		}
	}
	return nil
}

// fileLayer returns the config file's own values (nil without a file): a.v answers with
// whichever source wins, and a flag or variable may hide the file's value.
func (a *app) fileLayer() (*viper.Viper, error) {
	path := a.v.ConfigFileUsed()
	if path == "" {
		return nil, nil
	}
	fv := viper.New()
	fv.SetConfigFile(path)
	fv.SetConfigType("yaml")
	if err := fv.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return fv, nil
}

// valueRange is the valid range of a numeric setting: [min, max], or (min, max] with openMin.
type valueRange struct {
	min, max float64
	openMin  bool
	// meaning explains the special values, for the message.
	meaning string
}

// valueRanges are the ranges of the numeric settings that the CLI reads before the library sees
// them: counts the library never receives (workers, threads, ...), sentinels the CLI turns into
// automatic values (-1 = automatic), which would otherwise swallow any negative number, and
// values that only some runs use (strength without an init image). Counts the commands check
// themselves (steps, num-images, batch-size, particles) are not repeated here.
// Values the library checks against the run itself (eta, guidance, lambda, the FK schedule
// against the steps, the class against the model) are sampler.Config's to check, so every front
// end gets them.
var valueRanges = map[string]valueRange{
	"threads":          {min: 0, max: math.MaxInt32, meaning: "0 = ONNX Runtime's choice"},
	"device":           {min: 0, max: math.MaxInt32},
	"workers":          {min: 0, max: math.MaxInt32, meaning: "0 = one per core, as many as fit in memory"},
	"max-failures":     {min: -1, max: math.MaxInt32, meaning: "-1 = never stop"},
	"class":            {min: -1, max: math.MaxInt32, meaning: "-1 = the class the prompt names"},
	"resample-every":   {min: 0, max: math.MaxInt32, meaning: "0 = steps/20, at least 1"},
	"resample-start":   {min: -1, max: math.MaxInt32, meaning: "-1 = the interval"},
	"resample-end":     {min: -1, max: math.MaxInt32, meaning: "-1 = 60% of the steps"},
	"ess-threshold":    {min: 0, max: 1, meaning: "0 = resample at every evaluation"},
	"strength":         {min: 0, max: 1, openMin: true, meaning: "the share of the steps that redraw the init image"},
	"guidance-rescale": {min: 0, max: 1, meaning: "0 = off"},
	"width":            {min: 0, max: math.MaxInt32, meaning: "0 = the model's"},
	"height":           {min: 0, max: math.MaxInt32, meaning: "0 = the model's"},
}

// checkRange returns an error when a typed value of key lies outside its valueRange; NaN lies
// outside every range.
func checkRange(key string, val any) error {
	r, ok := valueRanges[key]
	if !ok {
		return nil
	}
	var x float64
	switch v := val.(type) {
	case int:
		x = float64(v)
	case float64:
		x = v
	default:
		return nil
	}
	lowOK := x >= r.min
	if r.openMin {
		lowOK = x > r.min
	}
	if lowOK && x <= r.max {
		return nil
	}
	want := fmt.Sprintf("at least %g", r.min)
	switch {
	case r.openMin:
		want = fmt.Sprintf("in (%g, %g]", r.min, r.max)
	case r.max < math.MaxInt32:
		want = fmt.Sprintf("in [%g, %g]", r.min, r.max)
	}
	if r.meaning != "" {
		want += " (" + r.meaning + ")"
	}
	return fmt.Errorf("%v is out of range: want a value %s", val, want)
}

// quotedValue prints a value for an error message on one line: strings quoted, and anything else
// whose printed form holds control characters quoted too, so a hostile value cannot break
// the one-line message or forge a second one.
func quotedValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	s := fmt.Sprint(v)
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// convert turns a value read from YAML, JSON or the environment into the type of def.
func convert(raw, def any) (any, error) {
	str, isStr := raw.(string)
	if n, ok := raw.(json.Number); ok {
		str, isStr = n.String(), true
	}
	switch def.(type) {
	case []string:
		return stringList(raw)
	case string:
		switch raw.(type) {
		case string, json.Number, int, int64, uint64, float64, bool:
			return fmt.Sprint(raw), nil
		}
		return nil, fmt.Errorf("%s is not a string", quotedValue(raw))
	case bool:
		if b, ok := raw.(bool); ok {
			return b, nil
		}
		if b, err := strconv.ParseBool(str); isStr && err == nil {
			return b, nil
		}
		return nil, fmt.Errorf("%s is not true or false", quotedValue(raw))
	case int, uint64:
		var i int64
		switch x := raw.(type) {
		case int:
			i = int64(x)
		case int64:
			i = x
		case uint64:
			if x > 1<<63-1 {
				if _, ok := def.(uint64); ok {
					return x, nil
				}
				return nil, fmt.Errorf("%s is too large", quotedValue(raw))
			}
			i = int64(x)
		case float64:
			if x != float64(int64(x)) {
				return nil, fmt.Errorf("%s is not a whole number", quotedValue(raw))
			}
			i = int64(x)
		default:
			if !isStr {
				return nil, fmt.Errorf("%s is not a whole number", quotedValue(raw))
			}
			if _, ok := def.(uint64); ok {
				u, err := strconv.ParseUint(strings.TrimSpace(str), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%q is not a non-negative whole number", str)
				}
				return u, nil
			}
			v, err := strconv.ParseInt(strings.TrimSpace(str), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not a whole number", str)
			}
			i = v
		}
		if _, ok := def.(uint64); ok {
			if i < 0 {
				return nil, fmt.Errorf("%d is negative", i)
			}
			return uint64(i), nil
		}
		return int(i), nil
	case float64:
		switch x := raw.(type) {
		case int:
			return float64(x), nil
		case int64:
			return float64(x), nil
		case uint64:
			return float64(x), nil
		case float64:
			return x, nil
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(str), 64); isStr && err == nil {
			return f, nil
		}
		return nil, fmt.Errorf("%s is not a number", quotedValue(raw))
	}
	return nil, fmt.Errorf("unsupported setting type %T", def)
}

// stringList reads a list setting: a YAML list of strings, or one string (a flag or an
// environment variable) whose comma-separated items are the elements.
func stringList(raw any) ([]string, error) {
	var items []string
	switch x := raw.(type) {
	case nil:
		return []string{}, nil
	case string:
		items = []string{x}
	case []string:
		items = x
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("list item %s is not a string", quotedValue(e))
			}
			items = append(items, s)
		}
	default:
		return nil, fmt.Errorf("%s is not a list of strings", quotedValue(raw))
	}
	out := []string{}
	for _, it := range items {
		for _, part := range strings.Split(it, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out, nil
}

// shownSetting is one row of `config show --json`.
type shownSetting struct {
	Key    string `json:"key"`
	Value  any    `json:"value"`
	Source string `json:"source"`
	// Env is the key's environment variable.
	Env string `json:"env"`
}

func (a *app) configShow(fs *pflag.FlagSet) error {
	file := a.v.ConfigFileUsed()
	var rows []shownSetting
	for _, g := range groups {
		for _, s := range g.settings {
			src := a.sourceOf(fs, s)
			var val any
			if src != fromModel {
				val = a.v.Get(s.key)
				if typed, err := convert(val, s.def); err == nil {
					val = typed
				}
			}
			rows = append(rows, shownSetting{Key: s.key, Value: val, Source: src, Env: envName(s.key)})
		}
	}
	models := configuredModels(a.v)
	if a.v.GetBool("json") {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			ConfigFile string            `json:"config_file"`
			Settings   []shownSetting    `json:"settings"`
			Models     map[string]string `json:"models,omitempty"`
		}{file, rows, models})
	}
	w := a.stdout
	fmt.Fprintln(w, "# Effective fksteer configuration. Precedence: flag > environment (FKSTEER_*) > config file > default.")
	if file == "" {
		fmt.Fprintln(w, "# No config file (--config, $FKSTEER_CONFIG or ./fksteer.yaml).")
	} else {
		fmt.Fprintf(w, "# Config file: %s\n", file)
	}
	i := 0
	for _, g := range groups {
		fmt.Fprintf(w, "\n# %s\n", g.name)
		for range g.settings {
			r := rows[i]
			i++
			if r.Source == fromModel {
				fmt.Fprintf(w, "# %s:  (unset: the model's recommended value)\n", r.Key)
				continue
			}
			line := r.Key + ": " + yamlScalar(r.Value)
			fmt.Fprintf(w, "%-40s # %s\n", line, describeSource(r.Source, r.Key, file))
		}
	}
	if len(models) > 0 {
		fmt.Fprintf(w, "\n%s:  # file %s\n", modelsKey, file)
		names := make([]string, 0, len(models))
		for n := range models {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(w, "  %s: %s\n", n, yamlScalar(models[n]))
		}
	}
	return nil
}

func describeSource(src, key, file string) string {
	switch src {
	case fromFlag:
		return "flag --" + key
	case fromEnv:
		return "env " + envName(key)
	case fromFile:
		return "file " + file
	}
	return src
}

// yamlScalar formats a value as YAML would write it in a mapping.
func yamlScalar(v any) string {
	if list, ok := v.([]string); ok {
		// Flow style keeps a list on its key's line: [a=1, "b: 2"].
		items := make([]string, len(list))
		for i, s := range list {
			items[i] = yamlScalar(s)
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	data, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(string(data), "\n")
}

// exampleConfig is a config file that sets every key to its default and documents it; the
// model-default keys and the models map are commented out. docs/fksteer.yaml is this text.
func exampleConfig() string {
	var b strings.Builder
	b.WriteString(`# fksteer configuration: every key, with its default and meaning.
#
# Generated by 'fksteer config example'; docs/configuration.md explains the rules.
# Use it as --config FILE, name it fksteer.yaml in the working folder, or point
# FKSTEER_CONFIG at it. Every key is also a command-line flag (--steps 8) and an environment
# variable (FKSTEER_STEPS=8); flags win over the environment, which wins over this file, which
# wins over the defaults. An unknown key is an error naming the closest valid one.
`)
	for _, g := range groups {
		fmt.Fprintf(&b, "\n# ---- %s ----\n", g.name)
		for _, s := range g.settings {
			b.WriteString("\n")
			for _, line := range wrapWords(s.usage, 92) {
				b.WriteString("# " + line + "\n")
			}
			if s.perItem {
				b.WriteString("# (A batch item may override it.)\n")
			}
			if s.modelDefault {
				fmt.Fprintf(&b, "# %s: %s\n", s.key, yamlScalar(exampleValue(s)))
				continue
			}
			fmt.Fprintf(&b, "%s: %s\n", s.key, yamlScalar(s.def))
		}
	}
	fmt.Fprintf(&b, `
# ---- models (config file only) ----

# Names for model manifests, usable as --model NAME and listed by 'fksteer models list'.
# Paths are relative to this file. Names are lower-cased; use letters, digits, '-' and '_'.
# %s:
#   mnist: ../examples/mnist-dit-rf.yaml

# ---- rewards (config file only) ----

# Names for reward specs, the rewards requests to fksteer serve may name (besides specs whose
# files lie under --allow-path).
# %s:
#   red: color:target=#cc2222
`, modelsKey, rewardsKey)
	return b.String()
}

// exampleValue is a plausible value for a commented-out model-default key.
func exampleValue(s setting) any {
	switch s.key {
	case "steps":
		return 50
	case "guidance":
		return 2.0
	case "sampler":
		return "ddim"
	case "eta":
		return 1.0
	}
	return s.def
}

func wrapWords(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

// overlay reads settings from a batch item's overrides first and from the configuration
// otherwise. Its values are checked and typed when it is built.
type overlay struct {
	base settings
	vals map[string]any
}

// settings is what specOf reads: viper, or an item's overlay on it.
type settings interface {
	GetString(key string) string
	GetInt(key string) int
	GetUint64(key string) uint64
	GetFloat64(key string) float64
	GetBool(key string) bool
	IsSet(key string) bool
}

// newOverlay checks an item's overrides: every key must be a setting a batch item may vary, and
// every value must parse as that setting's type.
func newOverlay(base settings, overrides map[string]any) (*overlay, error) {
	o := &overlay{base: base, vals: map[string]any{}}
	var allowed []string
	for _, s := range samplingSettings {
		if s.perItem {
			allowed = append(allowed, s.key)
		}
	}
	names := make([]string, 0, len(overrides))
	for k := range overrides {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		s, ok := lookup(k)
		if !ok {
			return nil, usageError{fmt.Errorf("overrides: %w", &keys.UnknownKeyError{Key: k, Suggestion: keys.Closest(k, allowed), Valid: allowed})}
		}
		if !s.perItem {
			return nil, usageError{fmt.Errorf("overrides: %s cannot vary per item (keys an item may override: %s)", k, strings.Join(allowed, ", "))}
		}
		v, err := convert(overrides[k], s.def)
		if err == nil {
			err = checkRange(k, v)
		}
		if err != nil {
			return nil, usageError{fmt.Errorf("overrides: %s: %w", k, err)}
		}
		o.vals[k] = v
	}
	return o, nil
}

func (o *overlay) IsSet(key string) bool {
	_, ok := o.vals[key]
	return ok || o.base.IsSet(key)
}

func (o *overlay) GetString(key string) string {
	if v, ok := o.vals[key].(string); ok {
		return v
	}
	return o.base.GetString(key)
}

func (o *overlay) GetInt(key string) int {
	if v, ok := o.vals[key].(int); ok {
		return v
	}
	return o.base.GetInt(key)
}

func (o *overlay) GetUint64(key string) uint64 {
	if v, ok := o.vals[key].(uint64); ok {
		return v
	}
	return o.base.GetUint64(key)
}

func (o *overlay) GetFloat64(key string) float64 {
	if v, ok := o.vals[key].(float64); ok {
		return v
	}
	return o.base.GetFloat64(key)
}

func (o *overlay) GetBool(key string) bool {
	if v, ok := o.vals[key].(bool); ok {
		return v
	}
	return o.base.GetBool(key)
}

var _ settings = (*viper.Viper)(nil)
