package pipelines

import (
	"bytes"
	"math"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParseManifest feeds arbitrary text to the manifest parser (seeds: testdata/fuzz/
// FuzzParseManifest). Properties: no panic; an accepted manifest names a state whose float32
// size fits in an int; and it round-trips: written back as YAML and parsed again it is the same
// manifest (compared as YAML text, so NaN equals NaN), so validation's filled-in defaults are a
// fixed point.
func FuzzParseManifest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if m != nil {
				t.Fatalf("ParseManifest returned a manifest beside the error %v", err)
			}
			return
		}
		n := 4 // bytes per float32 element
		for _, d := range m.Sample.Shape {
			if d <= 0 || n > math.MaxInt/d {
				t.Fatalf("accepted sample.shape %v: its size overflows", m.Sample.Shape)
			}
			n *= d
		}
		text, err := yaml.Marshal(m)
		if err != nil {
			t.Fatalf("marshal accepted manifest: %v", err)
		}
		again, err := ParseManifest(text)
		if err != nil {
			t.Fatalf("accepted manifest written back is rejected: %v\n%s", err, text)
		}
		if text2, _ := yaml.Marshal(again); !bytes.Equal(text, text2) {
			t.Fatalf("round trip changed the manifest:\n%s\nthen\n%s", text, text2)
		}
	})
}
