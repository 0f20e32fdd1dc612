package server_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/server"
)

// e2e runs one of server/e2e's node scripts against a server and decodes the JSON it prints.
// Without node, the npm packages (make e2e-deps) or chromium the test skips, naming the fix;
// in CI (CI=true) it fails instead, so that the browser and client tests cannot silently stop.
func e2e(t *testing.T, script string, out any, args ...string) {
	t.Helper()
	missing := func(what, fix string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing in CI: %s", what, fix)
		}
		t.Skipf("%s is missing: %s", what, fix)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node", "install Debian's nodejs")
	}
	if _, err := os.Stat(filepath.Join("e2e", "node_modules", "playwright-core")); err != nil {
		missing("server/e2e/node_modules", "run make e2e-deps (npm ci in server/e2e)")
	}
	if script == "page.mjs" {
		chromium := cmp.Or(os.Getenv("CHROMIUM"), "/usr/bin/chromium")
		if _, err := os.Stat(chromium); err != nil {
			missing("chromium", "run scripts/install-browser.sh as root (Debian's chromium), or set CHROMIUM")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = "e2e"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("node %s printed %q: %v\n%s", script, stdout.String(), err, stderr.String())
	}
}

// TestOpenAIClient drives the server with the official openai npm package: models.list,
// images.generate with fksteer's settings as an extra body parameter (the images must be the
// library's for the same spec), and an error the client parses as OpenAI's.
func TestOpenAIClient(t *testing.T) {
	ts, env := start(t, server.Config{APIKey: "k"})
	var got struct {
		Models  []string `json:"models"`
		Images  []string `json:"images"`
		Refused struct {
			Status int    `json:"status"`
			Param  string `json:"param"`
			Type   string `json:"type"`
		} `json:"refused"`
	}
	e2e(t, "openai-client.mjs", &got, ts.URL, "k")
	want := direct(t, env, generation.Spec{Prompt: `a red "A"`, Steps: 6, Method: "fk", Particles: 3, Reward: "color:target=#cc2222", Images: 2, Seed: 4})
	if len(got.Images) != 2 {
		t.Fatalf("the client got %d images, want 2", len(got.Images))
	}
	for i, img := range got.Images {
		if !bytes.Equal(b64(t, img), want[i]) {
			t.Errorf("image %d from the openai client differs from the library's", i)
		}
	}
	if len(got.Models) == 0 || got.Models[0] != "glyphs" {
		t.Errorf("models.list gave %v", got.Models)
	}
	if got.Refused.Status != 400 || got.Refused.Param != "size" || got.Refused.Type != "invalid_request_error" {
		t.Errorf("the client read a bad size's error as %+v, want status 400, param size, type invalid_request_error", got.Refused)
	}
}

// TestBrowser opens the web page in Debian's chromium (playwright-core), submits an FK job on
// glyphs and checks that the particle grid updated at least twice before the final image came,
// and that the final image carries the run's parameters.
func TestBrowser(t *testing.T) {
	ts, _ := start(t, server.Config{})
	var got struct {
		Seen []struct {
			Shown string `json:"shown"`
			Rows  int    `json:"rows"`
		} `json:"seen"`
		Final struct {
			Parameters string `json:"parameters"`
			Width      int    `json:"width"`
			Download   string `json:"download"`
		} `json:"final"`
		Errors []string `json:"errors"`
	}
	e2e(t, "page.mjs", &got, ts.URL+"/")
	updates := 0
	for _, s := range got.Seen {
		if s.Shown == "final" {
			break
		}
		updates++
	}
	if updates < 2 {
		t.Errorf("the particle grid updated %d times before the final image (%+v), want at least 2", updates, got.Seen)
	}
	for _, want := range []string{`a red "A"`, "Method: fk", "Particles: 6", "Steps: 24", "Seed: 3", "Reward: color:target=#cc2222"} {
		if !strings.Contains(got.Final.Parameters, want) {
			t.Errorf("the final image's parameters %q lack %q", got.Final.Parameters, want)
		}
	}
	if got.Final.Width != 32 || got.Final.Download != "fksteer-3.png" {
		t.Errorf("final image %d px wide, download name %q", got.Final.Width, got.Final.Download)
	}
	if len(got.Errors) > 0 {
		t.Errorf("the page threw: %v", got.Errors)
	}
}

// TestPythonRewardClient runs docs/examples/reward_client.py, the documented standard-library
// client of the reward server, on three images: it prints the scores the server gives.
func TestPythonRewardClient(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is missing: the documented client needs it")
	}
	ts, env := start(t, server.Config{APIKey: "py"})
	dir := t.TempDir()
	var paths []string
	for i, png := range direct(t, env, generation.Spec{Prompt: `"P"`, Steps: 4, Images: 3}) {
		p := filepath.Join(dir, fmt.Sprintf("%d.png", i))
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cmd := exec.Command(python, append([]string{filepath.Join("..", "docs", "examples", "reward_client.py"), ts.URL, "color:target=#cc2222"}, paths...)...)
	cmd.Env = append(os.Environ(), "FKSTEER_API_KEY=py")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("reward_client.py: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		t.Fatalf("reward_client.py printed %d lines, want 3:\n%s", len(lines), out)
	}
	for i, line := range lines {
		var got struct {
			Image string   `json:"image"`
			Score *float64 `json:"score"`
		}
		if err := json.Unmarshal([]byte(line), &got); err != nil || got.Image != paths[i] || got.Score == nil || *got.Score <= 0 || *got.Score > 1 {
			t.Errorf("line %d: %s (%v)", i, line, err)
		}
	}
}
