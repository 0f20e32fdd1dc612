// Package server serves fksteer over HTTP, on the generation API: the OpenAI images API
// (POST /v1/images/generations, GET /v1/models), the AUTOMATIC1111 API subset its clients use
// (/sdapi/v1/txt2img, img2img, sd-models, samplers, schedulers, progress), async jobs for long
// steering runs (POST /v1/jobs, progress, Server-Sent Events per step, cancel, downloads), a
// reward server for fine-tuning trainers (POST /v1/rewards/score), /healthz, /metrics in
// Prometheus' format, and a web page at / that shows the particles of a run live.
//
// Models and rewards are opened once, in the server's generation.Env. Jobs wait in a bounded
// queue (429 with Retry-After when it is full) and run on a fixed number of workers, at most
// Config.PerModel at once per model; a synchronous request whose client goes away cancels its
// job. Requests may name only configured models and rewards, catalog and built-in models, and
// files under Config.AllowPaths.
package server
