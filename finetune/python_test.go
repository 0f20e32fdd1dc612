package finetune_test

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/finetune"
	"github.com/fksteer/fksteer/schedule"
)

// expectedTensor is what check_dataset.py compares bit for bit with a shard: a tensor's dtype,
// shape and the bit patterns of its leading elements.
type expectedTensor struct {
	Shard    string  `json:"shard"`
	Key      string  `json:"key"`
	Dtype    string  `json:"dtype"`
	Shape    []int   `json:"shape"`
	HeadBits []int64 `json:"head_bits"`
}

// expectedValue is one decoded element check_dataset.py must read back exactly.
type expectedValue struct {
	ID     string  `json:"id"`
	Tensor string  `json:"tensor"`
	At     int     `json:"at"`
	Value  float64 `json:"value"`
}

// headBits returns the raw bit patterns of a tensor's first n elements, as Python's struct reads
// them (unsigned for floats, signed for int64).
func headBits(t finetune.Tensor, n int) []int64 {
	size := t.Dtype.Size()
	n = min(n, len(t.Data)/size)
	out := make([]int64, n)
	for i := range out {
		b := t.Data[i*size:]
		switch t.Dtype {
		case finetune.F32:
			out[i] = int64(binary.LittleEndian.Uint32(b))
		case finetune.F16:
			out[i] = int64(binary.LittleEndian.Uint16(b))
		default:
			out[i] = int64(binary.LittleEndian.Uint64(b))
		}
	}
	return out
}

// TestPythonReadsDataset writes two datasets (GRPO with float32 latents, D3PO with float16) and
// has scripts/check_dataset.py, which uses only Python's standard library, open them: it parses
// every shard and the manifest, checks the documented dtypes and shapes, recomputes the
// log-probabilities, checks advantages and pairs, and compares the tensors and values listed
// here with what the Go writer was given.
func TestPythonReadsDataset(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the dataset check in scripts/check_dataset.py cannot run (install python3 to run it)")
	}
	p := openGlyphs(t)
	for _, tc := range []struct {
		mode finetune.Mode
		half bool
		rule schedule.Rule // "": glyphOptions' ddim
	}{{finetune.GRPO, false, ""}, {finetune.D3PO, true, ""}, {finetune.GRPO, false, schedule.FlowSDERule}} {
		name := string(tc.mode)
		if tc.rule != "" {
			name += "-" + string(tc.rule)
		}
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "ds")
			o := glyphOptions(t, tc.mode, out, `"A" on navy`, `a yellow "7"`)
			o.Samples = 3
			o.Half = tc.half
			if tc.rule != "" {
				o.Sampling.Rule, o.Sampling.Eta = tc.rule, 0 // Flow-GRPO's noise level: every step drawn
			}
			export(t, p, o)
			d := openDataset(t, out)

			var exp struct {
				Samples int              `json:"samples"`
				Tensors []expectedTensor `json:"tensors"`
				Values  []expectedValue  `json:"values"`
			}
			exp.Samples = len(d.Rows)
			for _, r := range []finetune.Row{d.Rows[0], d.Rows[len(d.Rows)-1]} {
				for _, name := range []string{finetune.KeyLatents, finetune.KeyLatentIndex, finetune.KeyMeans, finetune.KeyLogProbs, finetune.KeyStds, finetune.KeyTimesteps, finetune.KeySigmas, finetune.KeyPromptEmbeds} {
					tensor, err := d.Tensor(r, name)
					if err != nil {
						t.Fatal(err)
					}
					exp.Tensors = append(exp.Tensors, expectedTensor{
						Shard: r.Shard, Key: r.Tensors[name], Dtype: string(tensor.Dtype), Shape: tensor.Shape,
						HeadBits: headBits(tensor, 16),
					})
				}
				tr, err := d.Trajectory(r)
				if err != nil {
					t.Fatal(err)
				}
				for s, lp := range tr.LogProbs {
					if lp == lp { // NaN is not representable in JSON; the script checks NaN steps itself
						exp.Values = append(exp.Values, expectedValue{ID: r.ID, Tensor: finetune.KeyLogProbs, At: r.Index*len(tr.LogProbs) + s, Value: float64(lp)})
					}
				}
				exp.Values = append(exp.Values, expectedValue{ID: r.ID, Tensor: finetune.KeyStds, At: 1, Value: float64(tr.Stds[1])})
			}
			data, err := json.Marshal(exp)
			if err != nil {
				t.Fatal(err)
			}
			expPath := filepath.Join(t.TempDir(), "expected.json")
			if err := os.WriteFile(expPath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(python, filepath.Join("..", "scripts", "check_dataset.py"), out, expPath)
			outb, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("check_dataset.py failed: %v\n%s", err, outb)
			}
			if !strings.HasPrefix(string(outb), "ok: 6 samples") {
				t.Errorf("check_dataset.py said %q", outb)
			}
			t.Logf("check_dataset.py: %s", strings.TrimSpace(string(outb)))
		})
	}
}
