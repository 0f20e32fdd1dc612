package rewards_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// TestRewardProviderOverride: provider=cpu in a reward spec runs that reward's models on the CPU
// whatever the run's provider, and drops the run's provider options. The run here asks for
// WebGPU with an option WebGPU refuses, so the reward only builds if the override applies.
func TestRewardProviderOverride(t *testing.T) {
	modeltest.Runtime(t)
	model := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	env := rewards.Env{ModelOptions: []models.Option{
		models.WithProvider("webgpu", 0),
		models.WithProviderOptions(map[string]string{"preferredLayout": "sideways"}),
	}}
	spec := "classifier:model=" + model + ",target=3,crop=28"
	if r, err := rewards.Parse(spec, env); err == nil {
		r.Close()
		t.Fatal("the run's broken WebGPU options did not reach the reward without an override")
	}
	r, err := rewards.Parse(spec+",provider=cpu", env)
	if err != nil {
		t.Fatalf("provider=cpu: %v", err)
	}
	defer r.Close()
	imgs := pixels.NewImages(2, 1, 28, 28)
	scores := make([]float64, 2)
	if err := r.Score(context.Background(), imgs, "", scores); err != nil {
		t.Fatalf("score with provider=cpu: %v", err)
	}
	for _, bad := range []string{"provider=auto", "provider=tpu"} {
		if _, err := rewards.Parse(spec+","+bad, rewards.Env{}); err == nil || !strings.Contains(err.Error(), "provider=") {
			t.Errorf("%s: error %v; want one naming the option", bad, err)
		}
	}
}
