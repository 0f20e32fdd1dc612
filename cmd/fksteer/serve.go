package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/server"
)

func (a *app) serveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the OpenAI and AUTOMATIC1111 image APIs, async steering jobs, a reward server and a web page",
		Long: `Keeps models and rewards loaded and serves them over HTTP (docs/server.md):
  POST /v1/images/generations, GET /v1/models        OpenAI's images API (fksteer settings in "fksteer")
  POST /sdapi/v1/txt2img, /sdapi/v1/img2img, ...      AUTOMATIC1111's API
  POST /v1/jobs, GET /v1/jobs/{id}[/events], cancel  async runs of a spec, with Server-Sent Events
  POST /v1/rewards/score                             the reward server for fine-tuning trainers
  GET /, /healthz, /metrics                          a live web page, health, Prometheus metrics
It listens on loopback unless told otherwise; any other address requires --api-key. SIGINT or
SIGTERM stops accepting work, lets the accepted jobs finish for --shutdown-grace seconds, then
cancels what remains.`,
		Example: `  fksteer serve
  FKSTEER_API_KEY=secret fksteer serve --listen :7860 --allow-path /models --provider webgpu`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.serve(cmd.Context()) },
	}
	addFlags(cmd.Flags(), serveSettings)
	return cmd
}

func (a *app) serve(ctx context.Context) error {
	addr, key := a.v.GetString("listen"), a.v.GetString("api-key")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageError{fmt.Errorf("--listen %q is not host:port (e.g. 127.0.0.1:7860 or :7860): %v", addr, err)}
	}
	if ip := net.ParseIP(host); key == "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usageError{fmt.Errorf("--listen %s accepts connections from other machines: set an API key (FKSTEER_API_KEY or --api-key), or listen on 127.0.0.1", addr)}
	}
	for _, k := range []string{"queue-size", "concurrency", "per-model", "job-timeout", "max-request-mib", "max-request-images", "max-request-particles", "max-request-steps"} {
		if a.v.GetInt(k) < 1 {
			return usageError{fmt.Errorf("--%s %d: it must be at least 1", k, a.v.GetInt(k))}
		}
	}
	opts, err := a.initRuntime()
	if err != nil {
		return err
	}
	if a.v.GetInt("model-memory") < 0 {
		return usageError{fmt.Errorf("--model-memory %d is negative (0 keeps every model open)", a.v.GetInt("model-memory"))}
	}
	env := a.newEnv(opts)
	env.ModelBytes = int64(a.v.GetInt("model-memory")) << 20
	if memoryChecked { // a request that cannot fit is refused with 400, not run out of memory
		env.Available = availableMemory
	}
	defer env.Close()
	allow, err := stringList(a.v.Get("allow-path"))
	if err != nil {
		return usageError{fmt.Errorf("allow-path: %w", err)}
	}
	srv, err := server.New(server.Config{
		Env: env, APIKey: key, AllowPaths: allow, Rewards: configuredRewards(a.v),
		QueueSize: a.v.GetInt("queue-size"), Workers: a.v.GetInt("concurrency"), PerModel: a.v.GetInt("per-model"),
		JobTimeout: time.Duration(a.v.GetInt("job-timeout")) * time.Second,
		Limits: server.Limits{BodyBytes: int64(a.v.GetInt("max-request-mib")) << 20, Images: a.v.GetInt("max-request-images"),
			Particles: a.v.GetInt("max-request-particles"), Steps: a.v.GetInt("max-request-steps")},
		Log: a.log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server using it? pick another port with --listen)", addr, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	a.log.Info("serving", "url", "http://"+ln.Addr().String(), "auth", key != "", "allow_paths", len(allow))
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		srv.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	grace := time.Duration(a.v.GetInt("shutdown-grace")) * time.Second
	a.log.Info("shutting down", "grace_seconds", grace.Seconds())
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// Jobs first (a synchronous request waits for its job), then the connections.
	jobsErr := srv.Close(sctx)
	httpErr := hs.Shutdown(sctx)
	if errors.Is(jobsErr, context.DeadlineExceeded) {
		a.log.Warn("running jobs were cancelled after the grace period")
	}
	if httpErr != nil && !errors.Is(httpErr, context.DeadlineExceeded) {
		return httpErr
	}
	return nil
}
