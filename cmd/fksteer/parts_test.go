package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/generation"
	"github.com/fksteer/fksteer/internal/pngtext"
	"github.com/fksteer/fksteer/models/modeltest"
)

// TestCompositeRewardPartsReachOutputs: a composite reward's parts appear in --json and in the
// PNG's parameters chunk, and their weighted sum is the reported reward.
func TestCompositeRewardPartsReachOutputs(t *testing.T) {
	modeltest.Runtime(t)
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := cli(t, "", "generate", "--prompt", `"fk"`, "--method", "bon", "--particles", "3",
		"--steps", "8", "--reward", "0.25*color:target=#808080+0.75*color:target=#ff0000", "--json", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		Images []generation.Written `json:"images"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	img := res.Images[0]
	if len(img.Parts) != 2 || img.Parts[0].Name != "color" || img.Parts[1].Name != "color#2" || img.Parts[1].Weight != 0.75 {
		t.Fatalf("reward_parts = %+v", img.Parts)
	}
	if sum := 0.25*float64(img.Parts[0].Score) + 0.75*float64(img.Parts[1].Score); abs(sum-img.Reward) > 1e-12 {
		t.Errorf("parts sum to %g, reward is %g", sum, img.Reward)
	}
	data, err := os.ReadFile(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := pngtext.Read(bytes.NewReader(data))
	if err != nil || len(entries) == 0 {
		t.Fatalf("text chunks: %v, %v", entries, err)
	}
	if !strings.Contains(entries[0].Text, `Reward parts: "0.25*color=`) {
		t.Errorf("parameters lack the reward parts: %q", entries[0].Text)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
