package pipelines_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/schedule"
)

// classManifest is a valid class-conditional manifest with ten classes and the given null class.
func classManifest(null string) string {
	return fmt.Sprintf(`model: m.onnx
inputs: {sample: x, time: t, cond: c}
output: y
prediction: flow
sample: {shape: [1, 32, 32]}
time: {kind: continuous}
conditioning: {kind: class, classes: ["0","1","2","3","4","5","6","7","8","9"], null_class: %s}
`, null)
}

// TestManifestNullClassRange: a null class outside the model's ids is refused when the manifest is
// loaded, naming the key and the valid ids, instead of failing later inside ONNX Runtime as an
// out-of-range embedding index.
func TestManifestNullClassRange(t *testing.T) {
	for _, null := range []string{"99", "11", "-1"} {
		_, err := pipelines.ParseManifest([]byte(classManifest(null)))
		want := "`conditioning.null_class` " + null + " is not a class id of this model: use 0..10"
		var me *pipelines.ManifestError
		if err == nil || !strings.Contains(err.Error(), want) || !errors.As(err, &me) {
			t.Errorf("null_class %s: error %v, want a *ManifestError containing %q", null, err, want)
		}
	}
	// The id after the named classes (the MNIST DiT's 10) and a named class are both valid.
	for _, null := range []string{"10", "0", "9"} {
		m, err := pipelines.ParseManifest([]byte(classManifest(null)))
		if err != nil {
			t.Errorf("null_class %s refused: %v", null, err)
			continue
		}
		if got := fmt.Sprint(*m.Conditioning.NullClass); got != null {
			t.Errorf("null_class %s read as %s", null, got)
		}
	}
}

// TestManifestDefaultSampler: defaults.sampler is parsed when the manifest is read, so the
// pipeline's Defaults hold a schedule.Rule and a misspelt one is a manifest error naming the key.
func TestManifestDefaultSampler(t *testing.T) {
	for in, want := range map[string]schedule.Rule{"": "", "euler": schedule.EulerRule, " DDIM": schedule.DDIMRule} {
		m, err := pipelines.ParseManifest([]byte(classManifest("10") + fmt.Sprintf("defaults: {sampler: %q}\n", in)))
		if err != nil {
			t.Errorf("sampler %q refused: %v", in, err)
		} else if m.Defaults.Sampler != want {
			t.Errorf("sampler %q read as %q, want %q", in, m.Defaults.Sampler, want)
		}
	}
	_, err := pipelines.ParseManifest([]byte(classManifest("10") + "defaults: {sampler: eulr}\n"))
	want := "`defaults.sampler`: unknown sampler \"eulr\" (did you mean \"euler\"?"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("sampler eulr: error %v, want one containing %q", err, want)
	}
}
