package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/fksteer/fksteer/batch"
	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/internal/keys"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
)

// Exit codes, documented in README.md. Schedulers can act on them: a Kubernetes Job's
// podFailurePolicy fails the job at once on exitUsage (retrying cannot help) and retries the
// rest (docs/kubernetes-indexed-job.yaml).
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitPartial: a batch finished, or stopped, with failed items; the others are written and a
	// rerun retries the failed ones.
	exitPartial     = 3
	exitInterrupted = 130
)

// app is one invocation of the CLI: its configuration and output streams.
type app struct {
	v              *viper.Viper
	stdout, stderr io.Writer
	configPath     string
	log            *slog.Logger
}

// usageError marks errors in how the command was called (exit code 2). Errors of the library
// that mean the same thing are recognised by their type: sampler.ConfigError and
// pipelines.ManifestError.
type usageError struct{ error }

// Unwrap lets errors.As and errors.Is see the wrapped error (a usageError around a
// sampler.ConfigError is still one).
func (e usageError) Unwrap() error { return e.error }

// asUsage marks err as a usage error unless it already is one.
func asUsage(err error) error {
	var ue usageError
	if errors.As(err, &ue) {
		return err
	}
	return usageError{err}
}

// rewardError classifies a failure to build a reward from its spec: bad usage (exit 2), except a
// file the spec names that is missing or unreadable, or an image over the pixel limit, which are
// errors (exit 1) as the same failures of the model's own files are. rewards.Parse's errors carry
// no type that tells a mistake in the spec from a file it names that could not be loaded, so the
// two known kinds of file failure are kept apart by their types and the rest is the spec's.
func rewardError(err error) error {
	var pe *fs.PathError
	var big *rewards.TooManyPixelsError
	if errors.As(err, &pe) || errors.As(err, &big) {
		return err
	}
	return asUsage(err)
}

// maxLogText bounds the user text (prompts) a log line repeats: a prompt file's line can be a
// megabyte, and one log line should stay readable.
const maxLogText = 200

// logText returns s, cut to maxLogText characters with an ellipsis when longer, for log lines.
func logText(s string) string {
	if utf8.RuneCountInString(s) <= maxLogText {
		return s
	}
	r := []rune(s)
	return string(r[:maxLogText]) + fmt.Sprintf("… (%d characters)", len(r))
}

func execute(args []string) int {
	return run(context.Background(), args, os.Stdout, os.Stderr)
}

// run executes the CLI with args; it is main without the process, so tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{v: newViper(), stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintln(stderr, "fksteer: interrupted; finished outputs were kept")
		return exitInterrupted
	}
	if strings.HasPrefix(err.Error(), "unknown command ") {
		// cobra's own usage error, over several lines ("Did you mean this?"): one line, exit 2.
		err = usageError{errors.New(oneLine(err.Error(), 300))}
	}
	fmt.Fprintf(stderr, "fksteer: %v\n", err)
	var ue usageError
	var ce *sampler.ConfigError
	var me *pipelines.ManifestError
	var se *generation.SpecError
	if errors.As(err, &ue) || errors.As(err, &ce) || errors.As(err, &me) || errors.As(err, &se) {
		return exitUsage
	}
	var fe *batch.FailedError
	if errors.As(err, &fe) {
		return exitPartial
	}
	return exitError
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "fksteer",
		Short:         "Inference-time steering of ONNX diffusion models with Feynman-Kac particles",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Precedence, highest first: flags, FKSTEER_* environment variables, the config file,
		// defaults (viper's own order, once the running command's flags are bound).
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkEnv(os.Environ()); err != nil {
				return err
			}
			// A key no setting declares is bad usage, as an unknown flag is (and as a value of
			// the wrong type already was): rerunning with the same file cannot help.
			if err := readConfigFile(a.v, configFile(a.configPath)); err != nil {
				var uk *keys.UnknownKeyError
				if errors.As(err, &uk) {
					return asUsage(err)
				}
				return err
			}
			if err := bindFlags(a.v, cmd.Flags()); err != nil {
				return err
			}
			if err := a.checkValues(cmd.Flags()); err != nil {
				return err
			}
			// Every command that decodes a user's image (score, init images, reward references)
			// refuses one over this many pixels before decoding it.
			maxPixels := a.v.GetInt64("max-image-pixels")
			if maxPixels < 0 {
				return usageError{fmt.Errorf("max-image-pixels %d is negative: want a pixel count (0 = no limit)", maxPixels)}
			}
			rewards.MaxImagePixels = maxPixels
			if err := applyLimits(a.v); err != nil {
				return err
			}
			return a.setupLogging()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&a.configPath, "config", "", "YAML config file (default $FKSTEER_CONFIG, else ./fksteer.yaml if present)")
	addFlags(root.PersistentFlags(), globalSettings)
	root.AddCommand(a.generateCommand(), a.benchCommand(), a.batchCommand(), a.configCommand(), a.modelsCommand())
	root.AddCommand(a.exportCommand())
	root.AddCommand(a.scoreCommand(), a.tokenizeCommand(), a.doctorCommand(), a.serveCommand())
	return root
}

func (a *app) setupLogging() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.v.GetString("log-level"))); err != nil {
		return usageError{fmt.Errorf("log-level %q is not debug, info, warn or error", a.v.GetString("log-level"))}
	}
	a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	return nil
}

// initRuntime loads ONNX Runtime and returns the session options the configuration asks for.
// With --provider auto the provider is chosen here, once, and the choice logged with its reason.
func (a *app) initRuntime() ([]models.Option, error) {
	a.log.Debug("loading ONNX Runtime")
	if err := checkThreads(a.v.GetInt("threads")); err != nil {
		return nil, err
	}
	if err := models.Init(a.v.GetString("ort-lib")); err != nil {
		return nil, err
	}
	requested, err := models.ParseProvider(a.v.GetString("provider"))
	if err != nil {
		return nil, usageError{err}
	}
	kv, err := providerOptions(a.v.Get("provider-option"))
	if err != nil {
		return nil, usageError{err}
	}
	// Resolved once here, so that a bad option is a usage error before any model opens and
	// every session gets the same provider.
	o, err := models.Resolve(
		models.WithProvider(string(requested), a.v.GetInt("device")),
		models.WithProviderOptions(kv),
		models.WithThreads(a.v.GetInt("threads"), 0),
	)
	if err != nil {
		return nil, usageError{err}
	}
	if requested == models.Auto {
		c := models.ChooseAuto()
		a.log.Info("execution provider", "provider", c.Provider, "by", "auto", "reason", c.Reason)
	}
	return []models.Option{models.WithOptions(o)}, nil
}

// providerOptions parses the provider-option list (key=value items) into a map.
func providerOptions(raw any) (map[string]string, error) {
	items, err := stringList(raw)
	if err != nil {
		return nil, fmt.Errorf("provider-option: %w", err)
	}
	kv := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return nil, fmt.Errorf("provider-option %q is not key=value (e.g. --provider-option preferredLayout=NHWC)", it)
		}
		kv[k] = strings.TrimSpace(v)
	}
	return kv, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
