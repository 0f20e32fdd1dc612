package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/fetch"
	"github.com/fksteer/fksteer/pipelines/inspect"
	"github.com/fksteer/fksteer/pipelines/sd"
)

func (a *app) modelsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "models", Short: "List, inspect and download models"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the built-in model, the config file's models and the known exports fksteer can pull",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return a.modelsList() },
	}
	inspectCmd := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Show a model's tensors (names, types, shapes) and which pipeline would run it",
		Long: `PATH is glyphs, a configured or pulled model name, a manifest (.yaml), an .onnx file or a
Stable Diffusion export folder. For a bare ONNX denoiser it prints a starting manifest.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return a.modelsInspect(args[0]) },
	}
	pull := &cobra.Command{
		Use:   "pull NAME",
		Short: "Download a known export into the cache, resuming an interrupted download and checking sha256",
		Long: `Downloads every file of a known export (fksteer models list) into <cache>/models/NAME.
An interrupted download continues where it stopped when the command is run again; every file is
checked against its pinned sha256, or against the sha256 the Hugging Face hub states for it, before
it is moved into place, so the cache never holds a partial or corrupt file. Gated models need
HF_TOKEN. --download-mirror fetches through an HTTP mirror (<mirror>/<host>/<path>). A host that
stays silent for --download-timeout seconds (60) while connecting, before answering or in the
middle of a file ends the attempt; a failed file is retried 4 times, resuming what arrived.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.modelsPull(cmd, args[0]) },
	}
	for _, c := range []*cobra.Command{list, inspectCmd, pull} {
		addFlags(c.Flags(), pick(samplingSettings, "json"))
	}
	addFlags(pull.Flags(), modelSettings)
	cmd.AddCommand(list, inspectCmd, pull)
	return cmd
}

func (a *app) modelsList() error {
	env := a.newEnv(nil)
	rows, err := env.List()
	if err != nil {
		return err
	}
	for i := range rows {
		if rows[i].Kind == generation.KindConfigured {
			rows[i].Description = "manifest from " + a.v.ConfigFileUsed()
		}
	}
	if a.v.GetBool("json") {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSTATUS\tSIZE\tDESCRIPTION")
	for _, r := range rows {
		size := ""
		if r.Bytes > 0 {
			size = humanBytes(r.Bytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, r.Status, size, r.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	cache, err := models.CacheDir()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "\nPull a catalog model with `fksteer models pull NAME` (into %s); --json shows licences, checksums and usage.\n", cache)
	return nil
}

// humanBytes formats a size in SI units, as model hosts state sizes.
func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

func (a *app) modelsInspect(path string) error {
	opts, err := a.initRuntime()
	if err != nil {
		return err
	}
	cache, err := models.CacheDir()
	if err != nil {
		return err
	}
	if p, ok := configuredModels(a.v)[strings.ToLower(path)]; ok {
		path = p
	} else if p, err := fetch.ResolveManifest(path, cache); err != nil {
		return err
	} else if p != "" {
		path = p
	} else if e, err := fetch.Lookup(path); err == nil && e.Pulled(cache) {
		path = e.Dir(cache) // a pulled export folder (sd-turbo)
	}
	r, err := inspect.Describe(path, cache, opts...)
	if err != nil {
		return err
	}
	if sd.IsExport(path) {
		// Opening the export checks that its parts fit together, which the tensor listing
		// alone does not show.
		p, err := sd.Open(path, sd.Options{Logger: a.log}, opts...)
		if err != nil {
			r.Pipeline = fmt.Sprintf("a Stable Diffusion export that cannot run: %v", err)
		} else {
			info := p.Info()
			r.Pipeline = fmt.Sprintf("Stable Diffusion (%s): %s scheduler, %s prediction, %dx%d images, defaults %d steps, guidance %g, sampler %s; run it with fksteer generate --model %s",
				info.Name, p.Scheduler().Kind, info.Prediction, info.ImageWidth, info.ImageHeight,
				info.Defaults.Steps, info.Defaults.Guidance, info.Defaults.Sampler, path)
			p.Close()
		}
	}
	if a.v.GetBool("json") {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	w := a.stdout
	fmt.Fprintf(w, "%s (%s)\npipeline: %s\n", r.Path, r.Format, r.Pipeline)
	for _, c := range r.Components {
		fmt.Fprintf(w, "\n%s: %s, %s; looks like: %s\n", c.Name, c.Path, humanBytes(c.Bytes), c.Role)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, io := range []struct {
			what string
			ts   []inspect.Tensor
		}{{"input", c.Inputs}, {"output", c.Outputs}} {
			for _, t := range io.ts {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", io.what, t.Name, t.Type, dims(t.Dims))
			}
		}
		tw.Flush()
	}
	if r.Manifest != "" {
		fmt.Fprintf(w, "\nA starting manifest (save as a .yaml beside the model, check the CHECK lines):\n\n%s", r.Manifest)
	}
	return nil
}

func dims(d []int64) string {
	parts := make([]string, len(d))
	for i, v := range d {
		if v < 0 {
			parts[i] = "?"
		} else {
			parts[i] = fmt.Sprint(v)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (a *app) modelsPull(cmd *cobra.Command, name string) error {
	e, err := fetch.Lookup(name)
	if err != nil {
		return usageError{err}
	}
	cache, err := models.CacheDir()
	if err != nil {
		return err
	}
	mirror := a.v.GetString("download-mirror")
	secs := a.v.GetInt("download-timeout")
	if secs <= 0 {
		return usageError{fmt.Errorf("download-timeout must be a positive number of seconds (got %d)", secs)}
	}
	wait := time.Duration(secs) * time.Second
	client := &fetch.Client{Progress: a.downloadProgress(), Attempts: pullAttempts,
		ConnectTimeout: wait, ResponseTimeout: wait, IdleTimeout: wait}
	if tok := os.Getenv("HF_TOKEN"); tok != "" && mirror == "" && allOnHub(e) {
		client.Header = http.Header{"Authorization": {"Bearer " + tok}}
	}
	a.log.Info("pulling", "model", e.Name, "files", len(e.Files), "into", e.Dir(cache), "licence", e.License)
	results, err := fetch.Pull(cmd.Context(), client, e, cache, mirror)
	var stall *fetch.StallError
	if errors.As(err, &stall) {
		return fmt.Errorf("%w; if the host is only slow, raise --download-timeout (now %ds)", err, secs)
	}
	if err != nil {
		return err
	}
	if a.v.GetBool("json") {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Name    string         `json:"name"`
			Dir     string         `json:"dir"`
			Files   []fetch.Result `json:"files"`
			License string         `json:"license"`
		}{e.Name, e.Dir(cache), results, e.License})
	}
	for _, r := range results {
		state := "downloaded"
		switch {
		case r.Cached:
			state = "already present"
		case r.Resumed:
			state = "resumed"
		}
		fmt.Fprintf(a.stdout, "%s  %s  sha256 %s (%s), %s\n", r.Path, humanBytes(r.Bytes), r.SHA256[:16], r.Verified, state)
	}
	fmt.Fprintf(a.stdout, "pulled %s into %s (licence: %s)\nuse: %s\n", e.Name, e.Dir(cache), e.License, strings.ReplaceAll(e.Use, "{dir}", e.Dir(cache)))
	return nil
}

// pullAttempts is how many times `models pull` tries each file (0: fetch's default of 4); tests
// lower it so that a host that never answers fails after one timeout.
var pullAttempts = 0

// allOnHub reports whether every file of e comes from the Hugging Face hub, the only host a
// token is sent to.
func allOnHub(e fetch.Export) bool {
	for _, f := range e.Files {
		u, err := url.Parse(f.URL)
		if err != nil || u.Host != "huggingface.co" {
			return false
		}
	}
	return true
}

// downloadProgress shows a byte bar per file on a terminal and a log line per tenth otherwise.
func (a *app) downloadProgress() func(fetch.File, int64, int64) {
	var bar *progressbar.ProgressBar
	var current string
	var lastTenth int64 = -1
	terminal := isTerminal(a.stderr)
	return func(f fetch.File, done, total int64) {
		if f.Dest != current {
			current, lastTenth = f.Dest, -1
			if bar != nil {
				bar.Exit()
			}
			bar = nil
			if terminal {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(a.stderr),
					progressbar.OptionSetDescription(shortName(f.Dest)), progressbar.OptionShowBytes(true),
					progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }))
			}
		}
		if bar != nil {
			bar.Set64(done)
			return
		}
		if total > 0 {
			if tenth := done * 10 / total; tenth != lastTenth {
				lastTenth = tenth
				a.log.Info("download", "file", shortName(f.Dest), "done", humanBytes(done), "of", humanBytes(total))
			}
		}
	}
}

func shortName(path string) string {
	parts := strings.Split(path, string(os.PathSeparator))
	return strings.Join(parts[max(0, len(parts)-2):], "/")
}
