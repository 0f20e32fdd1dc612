package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/server"
)

func TestMain(m *testing.M) { os.Exit(modeltest.Main(m)) }

// start serves a new server on a test listener; the server, its environment and the listener
// are closed at the end of the test.
func start(t testing.TB, cfg server.Config) (*httptest.Server, *generation.Env) {
	t.Helper()
	modeltest.Runtime(t)
	if cfg.Env == nil {
		cfg.Env = &generation.Env{}
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		srv.Close(context.Background())
		cfg.Env.Close()
	})
	return ts, cfg.Env
}

// post sends a JSON body and decodes the JSON answer.
func post(t testing.TB, ts *httptest.Server, path string, body any, header ...string) (int, map[string]any) {
	t.Helper()
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, ts.URL+path, bytes.NewReader(data))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s: answer is not JSON: %v\n%s", path, err, raw)
	}
	return resp.StatusCode, out
}

func get(t testing.TB, ts *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// direct samples spec with the library and returns its PNGs: what the CLI writes for it.
func direct(t testing.TB, env *generation.Env, spec generation.Spec) [][]byte {
	t.Helper()
	res, err := env.Generate(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i := range res.Outputs {
		data, err := res.PNG(i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

func b64(t testing.TB, v any) []byte {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(v.(string))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestOpenAIImages: the OpenAI route's images are the library's (and so the CLI's) for the
// same spec, with fksteer's settings in the extra object; errors come in OpenAI's shape.
func TestOpenAIImages(t *testing.T) {
	ts, env := start(t, server.Config{})
	spec := generation.Spec{Prompt: `a red "A"`, Steps: 6, Method: "fk", Particles: 3, Reward: "color:target=#cc2222", Images: 2, Seed: 4}
	code, body := post(t, ts, "/v1/images/generations", map[string]any{"prompt": spec.Prompt, "n": 2, "model": "glyphs", "size": "32x32",
		"fksteer": map[string]any{"steps": 6, "method": "fk", "particles": 3, "reward": "color:target=#cc2222", "seed": 4}})
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, body)
	}
	want := direct(t, env, spec)
	data := body["data"].([]any)
	if len(data) != 2 {
		t.Fatalf("%d images, want 2", len(data))
	}
	for i, d := range data {
		if !bytes.Equal(b64(t, d.(map[string]any)["b64_json"]), want[i]) {
			t.Errorf("image %d differs from the library's for the same spec", i)
		}
	}
	// response_format url serves the same PNG.
	_, body = post(t, ts, "/v1/images/generations", map[string]any{"prompt": spec.Prompt, "response_format": "url",
		"fksteer": map[string]any{"steps": 6, "method": "fk", "particles": 3, "reward": "color:target=#cc2222", "seed": 4}})
	url := body["data"].([]any)[0].(map[string]any)["url"].(string)
	code, png := get(t, ts, strings.TrimPrefix(url, ts.URL))
	if code != http.StatusOK || !bytes.Equal(png, want[0]) {
		t.Errorf("url %s: status %d, same bytes %t", url, code, bytes.Equal(png, want[0]))
	}
	for _, c := range []struct {
		name   string
		body   map[string]any
		status int
		param  string
	}{
		{"unknown setting", map[string]any{"prompt": "x", "fksteer": map[string]any{"stpes": 3}}, 400, "fksteer"},
		{"bad size", map[string]any{"prompt": "x", "size": "big"}, 400, "size"},
		{"size of another model", map[string]any{"prompt": "x", "size": "64x64"}, 400, ""},
		{"bad format", map[string]any{"prompt": "x", "response_format": "gif"}, 400, "response_format"},
		{"zero n", map[string]any{"prompt": "x", "n": 0}, 400, "n"},
		{"unknown model", map[string]any{"prompt": "x", "model": "dall-e-9"}, 404, "model"},
	} {
		code, body := post(t, ts, "/v1/images/generations", c.body)
		e, _ := body["error"].(map[string]any)
		if code != c.status || e == nil || e["message"] == "" || (c.param != "" && e["param"] != c.param) {
			t.Errorf("%s: status %d, error %v; want %d with param %q", c.name, code, e, c.status, c.param)
		}
	}
	_, models := get(t, ts, "/v1/models")
	if !bytes.Contains(models, []byte(`"id":"glyphs"`)) || !bytes.Contains(models, []byte(`"object":"list"`)) {
		t.Errorf("/v1/models: %s", models)
	}
}

// TestJobsStreamAndCancel submits a steering job, reads its Server-Sent Events (evaluations
// with particle previews and parents, then the end), downloads its image, and cancels another.
func TestJobsStreamAndCancel(t *testing.T) {
	ts, env := start(t, server.Config{})
	spec := generation.Spec{Prompt: `"B"`, Steps: 10, Method: "fk", Particles: 4, Reward: "color:target=#cc2222", Seed: 8}
	code, body := post(t, ts, "/v1/jobs", spec)
	if code != http.StatusAccepted || body["status"] != "queued" {
		t.Fatalf("POST /v1/jobs: %d %v", code, body)
	}
	resp, err := http.Get(ts.URL + body["events_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var evaluations int
	var done map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Fatal(err)
		}
		switch e["type"] {
		case "evaluation":
			evaluations++
			if n := len(e["previews"].([]any)); n != 4 || len(e["parents"].([]any)) != 4 {
				t.Errorf("evaluation at step %v has %d previews and %d parents, want 4 each", e["step"], n, len(e["parents"].([]any)))
			}
		case "done":
			done = e
		}
	}
	if evaluations < 2 || done == nil || done["status"] != "succeeded" {
		t.Fatalf("%d evaluations, end %v; want at least 2 evaluations, then success", evaluations, done)
	}
	out := done["outputs"].([]any)[0].(map[string]any)
	_, png := get(t, ts, out["url"].(string))
	if want := direct(t, env, spec); !bytes.Equal(png, want[0]) {
		t.Error("the job's image differs from the library's for the same spec")
	}
	_, state := get(t, ts, body["poll_url"].(string))
	if !bytes.Contains(state, []byte(`"status":"succeeded"`)) || !bytes.Contains(state, []byte(`"best_reward"`)) {
		t.Errorf("job state: %s", state)
	}
	// A long job, cancelled while it runs.
	_, long := post(t, ts, "/v1/jobs", generation.Spec{Prompt: `"C"`, Steps: 200, Particles: 64, Images: 16})
	poll := long["poll_url"].(string)
	for {
		_, st := get(t, ts, poll)
		if bytes.Contains(st, []byte(`"status":"running"`)) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling for a state, not timing anything
	}
	if code, _ := post(t, ts, poll+"/cancel", nil); code != http.StatusAccepted {
		t.Fatalf("cancel: status %d", code)
	}
	for {
		_, st := get(t, ts, poll)
		if bytes.Contains(st, []byte(`"status":"cancelled"`)) {
			break
		}
		if !bytes.Contains(st, []byte(`"status":"running"`)) {
			t.Fatalf("after cancel: %s", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueueFull: with one worker busy and a queue of one, the next job is refused with 429 and
// Retry-After.
func TestQueueFull(t *testing.T) {
	ts, _ := start(t, server.Config{QueueSize: 1, Workers: 1})
	long := generation.Spec{Prompt: `"C"`, Steps: 200, Particles: 64, Images: 16}
	var polls []string
	refused := false
	for range 4 {
		data, _ := json.Marshal(long)
		resp, err := http.Post(ts.URL+"/v1/jobs", "application/json", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			refused = resp.Header.Get("Retry-After") != ""
			break
		}
		polls = append(polls, body["poll_url"].(string))
	}
	if !refused {
		t.Error("no 429 with Retry-After although the queue holds one job and a worker is busy")
	}
	for _, p := range polls {
		post(t, ts, p+"/cancel", nil)
	}
}

// TestAuthLimitsAndPaths: an API key is required when set; requests over the limits and
// naming files outside the allowed folders are refused, naming the limit or the path.
func TestAuthLimitsAndPaths(t *testing.T) {
	allowed := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(allowed, "escape")); err != nil {
		t.Fatal(err)
	}
	ts, _ := start(t, server.Config{APIKey: "s3cret", AllowPaths: []string{allowed},
		Limits: server.Limits{BodyBytes: 4096, Images: 2, Particles: 4, Steps: 50}})
	code, body := post(t, ts, "/v1/jobs", generation.Spec{Prompt: "x"})
	if code != http.StatusUnauthorized || body["error"].(map[string]any)["code"] != "invalid_api_key" {
		t.Errorf("no key: %d %v", code, body)
	}
	if code, _ := post(t, ts, "/v1/jobs", generation.Spec{Prompt: "x"}, "Authorization", "Bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong key: status %d", code)
	}
	if code, _ := get(t, ts, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz without a key: %d", code)
	}
	auth := []string{"Authorization", "Bearer s3cret"}
	for _, c := range []struct {
		name   string
		spec   generation.Spec
		status int
		words  string
	}{
		{"images", generation.Spec{Images: 3}, 400, "limit of 2"},
		{"particles", generation.Spec{Particles: 5, Method: "fk", Reward: "color:target=#fff"}, 400, "limit of 4"},
		{"steps", generation.Spec{Steps: 51}, 400, "limit of 50"},
		{"model outside", generation.Spec{Model: filepath.Join(outside, "m.yaml")}, 403, "--allow-path"},
		{"model through ..", generation.Spec{Model: filepath.Join(allowed, "..", filepath.Base(outside), "m.yaml")}, 403, "--allow-path"},
		{"model through a symlink", generation.Spec{Model: filepath.Join(allowed, "escape", "m.yaml")}, 403, "--allow-path"},
		{"reward model outside", generation.Spec{Reward: "classifier:model=/etc/passwd"}, 403, "/etc/passwd"},
		{"init image outside", generation.Spec{InitImage: "/etc/hostname"}, 403, "init-image"},
		{"allowed but missing model", generation.Spec{Model: filepath.Join(allowed, "m.yaml")}, 202, ""},
	} {
		code, body := post(t, ts, "/v1/jobs", c.spec, auth...)
		text, _ := json.Marshal(body)
		if code != c.status || !bytes.Contains(text, []byte(c.words)) {
			t.Errorf("%s: status %d %s; want %d naming %q", c.name, code, text, c.status, c.words)
		}
	}
	big := map[string]any{"prompt": strings.Repeat("x", 5000)}
	if code, body := post(t, ts, "/v1/jobs", big, auth...); code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over the limit: %d %v", code, body)
	}
}

// TestRewardServer scores a batch of images with per-image prompts: the scores and parts are
// what rewards.Explain gives for the same images.
func TestRewardServer(t *testing.T) {
	ts, env := start(t, server.Config{})
	pngs := direct(t, env, generation.Spec{Prompt: `"A"`, Steps: 4, Images: 3})
	var images []string
	for _, p := range pngs {
		images = append(images, base64.StdEncoding.EncodeToString(p))
	}
	spec := "0.5*color:target=#cc2222+0.5*color:target=#2222cc"
	code, body := post(t, ts, "/v1/rewards/score", map[string]any{"images": images, "prompts": []string{"a", "b", "a"}, "reward": spec})
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, body)
	}
	r, err := rewards.Parse(spec, rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	scores := body["scores"].([]any)
	for i, p := range pngs {
		img, err := rewards.DecodeImage(p, "x")
		if err != nil {
			t.Fatal(err)
		}
		want, parts, err := rewards.Explain(context.Background(), r, rewards.FromImage(img), "")
		if err != nil {
			t.Fatal(err)
		}
		got := scores[i].(map[string]any)
		if got["score"].(float64) != want[0] || len(got["parts"].([]any)) != len(parts[0]) {
			t.Errorf("image %d: %v, want score %v with %d parts", i, got, want[0], len(parts[0]))
		}
	}
	for _, c := range []struct {
		name string
		body map[string]any
	}{
		{"no reward", map[string]any{"images": images}},
		{"no images", map[string]any{"reward": spec}},
		{"not base64", map[string]any{"reward": spec, "images": []string{"%%%"}}},
		{"not an image", map[string]any{"reward": spec, "images": []string{base64.StdEncoding.EncodeToString([]byte("text"))}}},
		{"prompts mismatch", map[string]any{"reward": spec, "images": images, "prompts": []string{"a"}}},
		{"unknown reward", map[string]any{"reward": "colour:target=#fff", "images": images}},
	} {
		if code, body := post(t, ts, "/v1/rewards/score", c.body); code != http.StatusBadRequest {
			t.Errorf("%s: status %d %v, want 400", c.name, code, body)
		}
	}
}

// TestA1111 answers txt2img as AUTOMATIC1111 does: base64 PNGs, the request as parameters and
// info as a JSON string with every seed; the images are the library's for the same spec.
func TestA1111(t *testing.T) {
	ts, env := start(t, server.Config{})
	code, body := post(t, ts, "/sdapi/v1/txt2img", map[string]any{"prompt": `"D"`, "steps": 5, "width": 32, "height": 32,
		"batch_size": 2, "n_iter": 1, "seed": 12, "cfg_scale": 1, "sampler_name": "Euler a", "negative_prompt": ""})
	if code != http.StatusOK {
		t.Fatalf("txt2img: %d %v", code, body)
	}
	want := direct(t, env, generation.Spec{Prompt: `"D"`, Steps: 5, Images: 2, Seed: 12, Guidance: ptr(1.0), Sampler: "euler-a"})
	imgs := body["images"].([]any)
	if len(imgs) != 2 || !bytes.Equal(b64(t, imgs[0]), want[0]) || !bytes.Equal(b64(t, imgs[1]), want[1]) {
		t.Errorf("txt2img images differ from the library's for the same spec")
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(body["info"].(string)), &info); err != nil || fmt.Sprint(info["all_seeds"]) != "[12 13]" {
		t.Errorf("info %v (%v), want all_seeds [12 13]", body["info"], err)
	}
	for _, path := range []string{"/sdapi/v1/sd-models", "/sdapi/v1/samplers", "/sdapi/v1/schedulers", "/sdapi/v1/progress"} {
		if code, data := get(t, ts, path); code != http.StatusOK || !json.Valid(data) {
			t.Errorf("%s: %d %s", path, code, data)
		}
	}
	// img2img needs a model with an image encoder; glyphs has none, and says so.
	code, body = post(t, ts, "/sdapi/v1/img2img", map[string]any{"prompt": "x", "init_images": []string{base64.StdEncoding.EncodeToString(want[0])}})
	if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body), "init-image") {
		t.Errorf("img2img on glyphs: %d %v", code, body)
	}
}

func ptr[T any](v T) *T { return &v }

// TestGracefulClose: Close lets a running job finish, then refuses new work.
func TestGracefulClose(t *testing.T) {
	modeltest.Runtime(t)
	env := &generation.Env{}
	defer env.Close()
	srv, err := server.New(server.Config{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	_, body := post(t, ts, "/v1/jobs", generation.Spec{Prompt: `"E"`, Steps: 20, Particles: 8})
	if err := srv.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, state := get(t, ts, body["poll_url"].(string))
	if !bytes.Contains(state, []byte(`"status":"succeeded"`)) {
		t.Errorf("a job queued before Close did not finish: %s", state)
	}
	if code, _ := post(t, ts, "/v1/jobs", generation.Spec{Prompt: "x"}); code != http.StatusServiceUnavailable {
		t.Errorf("a job after Close: status %d, want 503", code)
	}
}

// TestOpenWebUIRequests sends AUTOMATIC1111 requests shaped as Open WebUI sends them: it reads
// and sets the checkpoint through /sdapi/v1/options, then posts txt2img with prompt,
// batch_size, width, height, steps and negative_prompt, and reads images and info.
func TestOpenWebUIRequests(t *testing.T) {
	ts, env := start(t, server.Config{})
	_, opts := get(t, ts, "/sdapi/v1/options")
	if !bytes.Contains(opts, []byte(`"sd_model_checkpoint":"glyphs"`)) {
		t.Errorf("options: %s", opts)
	}
	if code, body := post(t, ts, "/sdapi/v1/options", map[string]any{"sd_model_checkpoint": "glyphs"}); code != http.StatusOK {
		t.Errorf("setting the checkpoint: %d %v", code, body)
	}
	if code, _ := post(t, ts, "/sdapi/v1/options", map[string]any{"sd_model_checkpoint": "/etc/passwd"}); code != http.StatusForbidden {
		t.Errorf("a checkpoint outside the allowed folders: status %d, want 403", code)
	}
	code, body := post(t, ts, "/sdapi/v1/txt2img", map[string]any{"prompt": `"W"`, "batch_size": 1, "width": 32, "height": 32, "steps": 7, "seed": 2})
	if code != http.StatusOK {
		t.Fatalf("txt2img: %d %v", code, body)
	}
	want := direct(t, env, generation.Spec{Prompt: `"W"`, Steps: 7, Seed: 2})
	if img := body["images"].([]any)[0]; !bytes.Equal(b64(t, img), want[0]) {
		t.Error("Open WebUI's txt2img image differs from the library's for the same spec")
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(body["info"].(string)), &info); err != nil || info["seed"] != 2.0 {
		t.Errorf("info %v: %v", body["info"], err)
	}
}

// TestConfiguredRewards: a request names a configured reward by its name, for scoring and for
// steering alike.
func TestConfiguredRewards(t *testing.T) {
	ts, env := start(t, server.Config{Rewards: map[string]string{"red": "color:target=#cc2222"}})
	pngs := direct(t, env, generation.Spec{Prompt: `"R"`, Steps: 4})
	code, body := post(t, ts, "/v1/rewards/score", map[string]any{"reward": "red", "images": []string{base64.StdEncoding.EncodeToString(pngs[0])}})
	if code != http.StatusOK || body["reward"] != "color" {
		t.Errorf("scoring with the configured reward red: %d %v", code, body)
	}
	code, body = post(t, ts, "/v1/images/generations", map[string]any{"prompt": `"R"`, "fksteer": map[string]any{"steps": 4, "method": "bon", "particles": 2, "reward": "red"}})
	if code != http.StatusOK {
		t.Errorf("steering with the configured reward red: %d %v", code, body)
	}
}

// TestMemoryRefused: with the environment reporting little memory, a request whose run cannot
// fit is refused with 400 naming memory, before anything is allocated.
func TestMemoryRefused(t *testing.T) {
	env := &generation.Env{Available: func() (uint64, bool) { return 1 << 20, true }}
	ts, _ := start(t, server.Config{Env: env})
	code, body := post(t, ts, "/v1/images/generations", map[string]any{"prompt": "x", "n": 4, "fksteer": map[string]any{"particles": 16, "method": "bon", "reward": "color:target=#cc2222"}})
	text, _ := json.Marshal(body)
	if code != http.StatusBadRequest || !bytes.Contains(text, []byte("memory")) {
		t.Errorf("a run over the memory available: %d %s", code, text)
	}
	if code, body := post(t, ts, "/v1/images/generations", map[string]any{"prompt": "x", "fksteer": map[string]any{"steps": 2}}); code != http.StatusOK {
		t.Errorf("a run that fits: %d %v", code, body)
	}
}

// TestClientGoneCancelsItsJob: a synchronous request whose client disconnects while its job runs
// cancels the job, rather than leaving it to run for nobody.
func TestClientGoneCancelsItsJob(t *testing.T) {
	ts, _ := start(t, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	body, _ := json.Marshal(map[string]any{"prompt": `"L"`, "n": 16, "fksteer": map[string]any{"steps": 200, "particles": 64}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/images/generations", bytes.NewReader(body))
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for { // until the job runs (polling a state, not timing anything)
		_, p := get(t, ts, "/sdapi/v1/progress")
		if bytes.Contains(p, []byte(`"job":`)) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request finished although its client went away")
	}
	for i := 0; ; i++ {
		_, m := get(t, ts, "/metrics")
		if bytes.Contains(m, []byte(`fksteer_jobs_total{status="cancelled"} 1`)) {
			break
		}
		if i == 1000 {
			t.Fatalf("the job was not cancelled:\n%s", m)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSearchRequestsAndTheirNFE: a request names any method and a budget in its fksteer object,
// and /metrics counts the NFE the engine spent, within the budget.
func TestSearchRequestsAndTheirNFE(t *testing.T) {
	ts, _ := start(t, server.Config{})
	code, body := post(t, ts, "/v1/images/generations", map[string]any{"prompt": `a red "A"`, "n": 2,
		"fksteer": map[string]any{"steps": 5, "method": "beam", "budget": 30, "reward": "color:target=#cc2222", "seed": 4}})
	if code != http.StatusOK || len(body["data"].([]any)) != 2 {
		t.Fatalf("status %d: %v", code, body)
	}
	_, m := get(t, ts, "/metrics")
	var nfe float64
	for line := range strings.Lines(string(m)) {
		if v, ok := strings.CutPrefix(line, "fksteer_nfe_total "); ok {
			if _, err := fmt.Sscan(v, &nfe); err != nil {
				t.Fatal(err)
			}
		}
	}
	if nfe <= 0 || nfe > 2*30 {
		t.Errorf("fksteer_nfe_total %g for 2 images of a 30 NFE budget", nfe)
	}
}
