package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/fksteer/fksteer/server"
)

// fuzzRoutes are the routes that read a request body.
var fuzzRoutes = []string{"/v1/images/generations", "/v1/jobs", "/v1/rewards/score", "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/options"}

// FuzzRequestBodies posts arbitrary bodies to every route that reads one. Properties: no
// panic; every answer is a status below 500 with a JSON body, and an error answer is OpenAI's
// {"error": {"message": ...}} with a message. Limits are small, so that a body that happens to
// be a valid spec runs quickly.
func FuzzRequestBodies(f *testing.F) {
	ts, _ := start(f, server.Config{Limits: server.Limits{Images: 2, Particles: 2, Steps: 3, BodyBytes: 1 << 16, Scores: 2}})
	for _, seed := range []string{
		`{"prompt": "\"A\"", "n": 1, "fksteer": {"steps": 2}}`,
		`{"prompt": "x", "size": "32x32", "response_format": "url"}`,
		`{"prompt": "\"B\"", "steps": 2, "method": "fk", "particles": 2, "reward": "color:target=#cc2222"}`,
		`{"reward": "color:target=#cc2222", "images": ["iVBORw0KGgo="]}`,
		`{"prompt": "x", "steps": 2, "seed": -1, "batch_size": 1, "sampler_name": "Euler a"}`,
		`{"init_images": ["data:image/png;base64,AAAA"], "denoising_strength": 0.5}`,
		`{"sd_model_checkpoint": "../etc"}`,
		`{"model": "/etc/passwd", "reward": "classifier:model=/x.onnx"}`,
		`{"fksteer": {"lambda": "ten", "resample-start": -4}}`,
		`[1, 2, 3]`, `null`, `{"n": 1e309}`, ``,
	} {
		for i := range fuzzRoutes {
			f.Add(uint8(i), []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := fuzzRoutes[int(route)%len(fuzzRoutes)]
		resp, err := http.Post(ts.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		dec := json.NewDecoder(resp.Body)
		if resp.StatusCode >= 500 {
			t.Fatalf("%s: status %d for %q", path, resp.StatusCode, body)
		}
		if path == "/sdapi/v1/options" && resp.StatusCode == http.StatusOK {
			return
		}
		if err := dec.Decode(&out); err != nil {
			t.Fatalf("%s: status %d with a body that is not JSON: %v", path, resp.StatusCode, err)
		}
		if resp.StatusCode >= 400 {
			e, _ := out["error"].(map[string]any)
			if msg, _ := e["message"].(string); msg == "" {
				t.Fatalf("%s: status %d without an error message: %v", path, resp.StatusCode, out)
			}
		}
	})
}
