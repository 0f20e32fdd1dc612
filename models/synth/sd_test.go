package synth_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/models/onnxpb"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/schedule"
	"github.com/fksteer/fksteer/tokenizers/clip"
)

// writeSD writes variant v into a fresh temporary folder.
func writeSD(t testing.TB, v synth.SDVariant, o synth.SDOptions) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), string(v))
	if err := synth.WriteSD(dir, v, o); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openSD loads one model of an export folder.
func openSD(t testing.TB, dir, model string) *models.Session {
	t.Helper()
	modeltest.Runtime(t)
	s, err := models.Open(filepath.Join(dir, model, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sdLayout is every model's inputs and outputs, as TensorInfo.String writes them ("?" for a
// dynamic dimension), per variant.
var sdLayout = map[synth.SDVariant]map[string][2][]string{
	synth.SD15: {
		"text_encoder": {{"input_ids int32[?,?]"}, {"last_hidden_state float32[?,?,32]", "pooler_output float32[?,32]"}},
		"unet": {{"sample float32[?,?,?,?]", "timestep int64[1]", "encoder_hidden_states float32[?,?,32]"},
			{"out_sample float32[?,4,?,?]"}},
		"vae_decoder": {{"latent_sample float32[?,?,?,?]"}, {"sample float32[?,3,?,?]"}},
		"vae_encoder": {{"sample float32[?,?,?,?]"}, {"latent_sample float32[?,4,?,?]"}},
	},
	synth.SD15Optimum: {
		"text_encoder": {{"input_ids int64[?,?]"}, {"last_hidden_state float32[?,?,32]", "pooler_output float32[?,32]"}},
		"unet": {{"sample float32[?,?,?,?]", "timestep float32[]", "encoder_hidden_states float32[?,?,32]"},
			{"out_sample float32[?,4,?,?]"}},
		"vae_decoder": {{"latent_sample float32[?,?,?,?]"}, {"sample float32[?,3,?,?]"}},
		"vae_encoder": {{"sample float32[?,?,?,?]"}, {"latent_parameters float32[?,8,?,?]"}},
	},
	synth.SD15FP16: {
		"text_encoder": {{"input_ids int32[?,?]"}, {"last_hidden_state float16[?,?,32]", "pooler_output float16[?,32]"}},
		"unet": {{"sample float16[?,?,?,?]", "timestep float16[?]", "encoder_hidden_states float16[?,?,32]"},
			{"out_sample float16[?,4,?,?]"}},
		"vae_decoder": {{"latent_sample float16[?,?,?,?]"}, {"sample float16[?,3,?,?]"}},
		"vae_encoder": {{"sample float16[?,?,?,?]"}, {"latent_parameters float16[?,8,?,?]"}},
	},
	synth.SD2V: {
		"text_encoder": {{"input_ids int32[?,?]"}, {"last_hidden_state float32[?,?,40]", "pooler_output float32[?,40]"}},
		"unet": {{"sample float32[?,?,?,?]", "timestep float32[?]", "encoder_hidden_states float32[?,?,40]"},
			{"out_sample float32[?,4,?,?]"}},
		"vae_decoder": {{"latent_sample float32[?,?,?,?]"}, {"sample float32[?,3,?,?]"}},
		"vae_encoder": {{"sample float32[?,?,?,?]"}, {"latent_sample float32[?,4,?,?]"}},
	},
	synth.SDTurbo: {
		"text_encoder": {{"input_ids int32[?,?]"}, {"last_hidden_state float32[?,?,40]", "pooler_output float32[?,40]"}},
		"unet": {{"sample float32[?,?,?,?]", "timestep float32[?]", "encoder_hidden_states float32[?,?,40]"},
			{"out_sample float32[?,4,?,?]"}},
		"vae_decoder": {{"latent_sample float32[?,?,?,?]"}, {"sample float32[?,3,?,?]"}},
		"vae_encoder": {{"sample float32[?,?,?,?]"}, {"latent_sample float32[?,4,?,?]"}},
	},
	synth.SDXL: {
		"text_encoder": {{"input_ids int64[?,?]"}, {"last_hidden_state float32[?,?,32]", "pooler_output float32[?,32]",
			"hidden_states.0 float32[?,?,32]", "hidden_states.1 float32[?,?,32]", "hidden_states.2 float32[?,?,32]"}},
		"text_encoder_2": {{"input_ids int64[?,?]"}, {"text_embeds float32[?,48]", "last_hidden_state float32[?,?,48]",
			"hidden_states.0 float32[?,?,48]", "hidden_states.1 float32[?,?,48]", "hidden_states.2 float32[?,?,48]"}},
		"unet": {{"sample float32[?,?,?,?]", "timestep float32[?]", "encoder_hidden_states float32[?,?,80]",
			"text_embeds float32[?,48]", "time_ids float32[?,6]"}, {"out_sample float32[?,4,?,?]"}},
		"vae_decoder": {{"latent_sample float32[?,?,?,?]"}, {"sample float32[?,3,?,?]"}},
		"vae_encoder": {{"sample float32[?,?,?,?]"}, {"latent_parameters float32[?,8,?,?]"}},
	},
	synth.LCM: {
		"text_encoder": {{"input_ids int32[?,?]"}, {"last_hidden_state float32[?,?,32]", "pooler_output float32[?,32]"}},
		"unet": {{"sample float32[?,?,?,?]", "timestep int64[?]", "encoder_hidden_states float32[?,?,32]",
			"timestep_cond float32[?,256]"}, {"out_sample float32[?,4,?,?]"}},
		"vae_decoder": {{"latent_sample float32[?,?,?,?]"}, {"sample float32[?,3,?,?]"}},
		"vae_encoder": {{"sample float32[?,?,?,?]"}, {"latent_sample float32[?,4,?,?]"}},
	},
}

func infoStrings(ts []models.TensorInfo) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}

func TestSDLayouts(t *testing.T) {
	if len(sdLayout) != len(synth.SDVariants) {
		t.Fatalf("the layout table covers %d variants, SDVariants has %d", len(sdLayout), len(synth.SDVariants))
	}
	for _, v := range synth.SDVariants {
		t.Run(string(v), func(t *testing.T) {
			dir := writeSD(t, v, synth.SDOptions{})
			for model, want := range sdLayout[v] {
				s := openSD(t, dir, model)
				if got := infoStrings(s.Inputs); !slices.Equal(got, want[0]) {
					t.Errorf("%s inputs:\n got %v\nwant %v", model, got, want[0])
				}
				if got := infoStrings(s.Outputs); !slices.Equal(got, want[1]) {
					t.Errorf("%s outputs:\n got %v\nwant %v", model, got, want[1])
				}
				for _, f := range []string{"config.json", "model.onnx"} {
					if _, err := os.Stat(filepath.Join(dir, model, f)); err != nil {
						t.Error(err)
					}
				}
			}
			for _, f := range []string{"model_index.json", "scheduler/scheduler_config.json",
				"tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// externalInitializers lists the initializers of a model file stored as external data, and the
// location they name.
func externalInitializers(t *testing.T, path string) (names []string, locations map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	locations = map[string]bool{}
	for _, init := range m.Graph.Initializer {
		if init.DataLocation != onnxpb.TensorProto_EXTERNAL {
			continue
		}
		names = append(names, init.Name)
		for _, e := range init.ExternalData {
			if e.Key == "location" {
				locations[e.Value] = true
			}
		}
	}
	return names, locations
}

func TestSDExternalWeights(t *testing.T) {
	for _, tt := range []struct {
		v            synth.SDVariant
		model, file  string
		inlineModels []string
	}{
		{synth.SD15, "unet", "model.onnx_data", []string{"text_encoder", "vae_decoder", "vae_encoder"}},
		{synth.SD15Optimum, "text_encoder", "weights.pb", []string{"unet", "vae_decoder", "vae_encoder"}},
	} {
		dir := writeSD(t, tt.v, synth.SDOptions{Convs: 2})
		names, locs := externalInitializers(t, filepath.Join(dir, tt.model, "model.onnx"))
		if len(names) == 0 || len(locs) != 1 || !locs[tt.file] {
			t.Errorf("%s %s: external initializers %v in %v, want some in %s", tt.v, tt.model, names, locs, tt.file)
		}
		if st, err := os.Stat(filepath.Join(dir, tt.model, tt.file)); err != nil || st.Size() < 1024 {
			t.Errorf("%s %s/%s: %v", tt.v, tt.model, tt.file, err)
		}
		for _, m := range tt.inlineModels {
			if names, _ := externalInitializers(t, filepath.Join(dir, m, "model.onnx")); len(names) > 0 {
				t.Errorf("%s %s has external initializers %v", tt.v, m, names)
			}
		}
	}
}

// readTree maps every file under dir to its contents.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestSDIsDeterministic(t *testing.T) {
	for _, v := range synth.SDVariants {
		a := readTree(t, writeSD(t, v, synth.SDOptions{Convs: 1}))
		b := readTree(t, writeSD(t, v, synth.SDOptions{Convs: 1}))
		other := readTree(t, writeSD(t, v, synth.SDOptions{Convs: 1, Seed: 2}))
		if len(a) != len(b) {
			t.Fatalf("%s: %d files, then %d", v, len(a), len(b))
		}
		for name, data := range a {
			if !bytes.Equal(data, b[name]) {
				t.Errorf("%s: two writes of %s differ", v, name)
			}
		}
		if bytes.Equal(a["unet/model.onnx"], other["unet/model.onnx"]) && bytes.Equal(a["text_encoder/model.onnx"], other["text_encoder/model.onnx"]) {
			t.Errorf("%s: another seed gives the same models", v)
		}
	}
}

func TestSDRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	if err := synth.WriteSD(dir, "sd3", synth.SDOptions{}); err == nil || !strings.Contains(err.Error(), "sd3") {
		t.Errorf("unknown variant: %v", err)
	}
	if err := synth.WriteSD(dir, synth.SD15, synth.SDOptions{Convs: -1}); err == nil {
		t.Error("negative Convs accepted")
	}
}

func TestSDTokenizersLoad(t *testing.T) {
	for _, v := range synth.SDVariants {
		dir := writeSD(t, v, synth.SDOptions{})
		folders := []string{"tokenizer"}
		if v == synth.SDXL {
			folders = append(folders, "tokenizer_2")
		}
		for _, f := range folders {
			tok, err := clip.Load(filepath.Join(dir, f))
			if err != nil {
				t.Fatalf("%s %s: %v", v, f, err)
			}
			if tok.MaxLength() != 77 || tok.EOS() != tok.VocabSize()-1 || tok.BOS() != tok.VocabSize()-2 {
				t.Errorf("%s %s: max length %d, BOS %d, EOS %d of %d ids", v, f, tok.MaxLength(), tok.BOS(), tok.EOS(), tok.VocabSize())
			}
			// SD 2.x and SDXL's second tokenizer pad with "!" (id 0), SD 1.x with EOS.
			wantPad := tok.EOS()
			if v == synth.SD2V || v == synth.SDTurbo || f == "tokenizer_2" {
				wantPad = 0
			}
			if tok.PadID() != wantPad {
				t.Errorf("%s %s: pad id %d, want %d", v, f, tok.PadID(), wantPad)
			}
			ids := tok.Encode("a photo of a cat")
			if got := tok.Decode(ids[1 : len(ids)-1]); len(ids) != 7 || ids[0] != tok.BOS() || ids[6] != tok.EOS() || got != "a photo of a cat" {
				t.Errorf("%s %s: \"a photo of a cat\" encodes to %v (%q), want BOS and five word tokens and EOS", v, f, ids, got)
			}
			// Any text encodes, byte by byte where no merge applies.
			if ids := tok.Encode("Zebra? 日本"); tok.Decode(ids[1:len(ids)-1]) != "zebra ? 日本" {
				t.Errorf("%s %s: round trip of unusual text gives %q", v, f, tok.Decode(ids[1:len(ids)-1]))
			}
		}
	}
}

// value is one input of runORT: floats for float inputs, ints for integer ones.
type value struct {
	shape []int64
	f     []float32
	i     []int64
}

// runORT runs the model at path on inputs and returns the outputs named in outs, each of the
// shape given (float outputs only). It speaks to ONNX Runtime directly, in every declared
// element type, since models.Call sizes float16 outputs only when an input has their shape.
func runORT(t testing.TB, path string, inputs map[string]value, outs map[string][]int64) map[string][]float32 {
	t.Helper()
	modeltest.Runtime(t)
	s, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var inNames, outNames []string
	var inVals, outVals []ort.Value
	defer func() {
		for _, v := range append(inVals, outVals...) {
			v.Destroy()
		}
	}()
	for _, info := range s.Inputs {
		in, ok := inputs[info.Name]
		if !ok {
			t.Fatalf("%s: no value for input %s", path, info)
		}
		var v ort.Value
		var err error
		n := len(in.f) + len(in.i)
		switch {
		case len(in.shape) == 0 && info.Type == models.Float32:
			v, err = ort.NewScalar(in.f[0])
		case info.Type == models.Float32:
			v, err = ort.NewTensor(ort.Shape(in.shape), in.f)
		case info.Type == models.Float16:
			buf := make([]byte, 2*n)
			models.EncodeFloat16(buf, in.f)
			v, err = ort.NewCustomDataTensor(ort.Shape(in.shape), buf, ort.TensorElementDataTypeFloat16)
		case info.Type == models.Int64:
			v, err = ort.NewTensor(ort.Shape(in.shape), in.i)
		case info.Type == models.Int32:
			i32 := make([]int32, n)
			for k, x := range in.i {
				i32[k] = int32(x)
			}
			v, err = ort.NewTensor(ort.Shape(in.shape), i32)
		}
		if err != nil || v == nil {
			t.Fatalf("%s: input %s: %v", path, info, err)
		}
		inNames, inVals = append(inNames, info.Name), append(inVals, v)
	}
	for _, info := range s.Outputs {
		shape, ok := outs[info.Name]
		if !ok {
			continue
		}
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		var v ort.Value
		var err error
		if info.Type == models.Float16 {
			v, err = ort.NewCustomDataTensor(ort.Shape(shape), make([]byte, 2*n), ort.TensorElementDataTypeFloat16)
		} else {
			v, err = ort.NewEmptyTensor[float32](ort.Shape(shape))
		}
		if err != nil {
			t.Fatalf("%s: output %s: %v", path, info, err)
		}
		outNames, outVals = append(outNames, info.Name), append(outVals, v)
	}
	sess, err := ort.NewDynamicAdvancedSession(path, inNames, outNames, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	if err := sess.Run(inVals, outVals); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	res := map[string][]float32{}
	for k, name := range outNames {
		switch v := outVals[k].(type) {
		case *ort.Tensor[float32]:
			res[name] = slices.Clone(v.GetData())
		case *ort.CustomDataTensor:
			f := make([]float32, len(v.GetData())/2)
			models.DecodeFloat16(f, v.GetData())
			res[name] = f
		}
	}
	return res
}

// tokens returns the padded ids of prompts, one row each, as an input value.
func tokens(t *testing.T, dir, folder string, prompts ...string) value {
	t.Helper()
	tok, err := clip.Load(filepath.Join(dir, folder))
	if err != nil {
		t.Fatal(err)
	}
	in := value{shape: []int64{int64(len(prompts)), 77}}
	for _, p := range prompts {
		ids, _ := tok.EncodePadded(p)
		for _, id := range ids {
			in.i = append(in.i, int64(id))
		}
	}
	return in
}

func TestSDTextEncoderIsCausalAndPoolsAtEOS(t *testing.T) {
	for _, v := range []synth.SDVariant{synth.SD15, synth.SD15FP16, synth.SDXL} {
		dir := writeSD(t, v, synth.SDOptions{})
		const d = 32
		prompts := []string{"a photo of a cat", "a photo of a dog", "a red house with a blue tree"}
		ids := tokens(t, dir, "tokenizer", prompts...)
		outs := map[string][]int64{synth.LastHiddenState: {3, 77, d}, synth.PoolerOutput: {3, d}}
		if v == synth.SDXL {
			outs["hidden_states.2"] = []int64{3, 77, d}
		}
		res := runORT(t, filepath.Join(dir, "text_encoder", "model.onnx"), map[string]value{synth.InputIDs: ids}, outs)
		last, pooled := res[synth.LastHiddenState], res[synth.PoolerOutput]
		for r := range 3 {
			eos := slices.Index(ids.i[r*77:(r+1)*77], slices.Max(ids.i))
			if !slices.Equal(pooled[r*d:(r+1)*d], last[(r*77+eos)*d:(r*77+eos+1)*d]) {
				t.Errorf("%s prompt %d: pooler_output is not last_hidden_state at EOS (position %d)", v, r, eos)
			}
		}
		// Prompts 0 and 1 differ first at position 5 ("cat" vs "dog"): positions 0-4 agree, 5 on differ.
		row := func(r, p int) []float32 { return last[(r*77+p)*d : (r*77+p+1)*d] }
		for p := range 5 {
			if !slices.Equal(row(0, p), row(1, p)) {
				t.Errorf("%s: position %d depends on a later token", v, p)
			}
		}
		if slices.Equal(row(0, 5), row(1, 5)) || slices.Equal(row(0, 76), row(1, 76)) {
			t.Errorf("%s: hidden states ignore the token that differs", v)
		}
		if hs := res["hidden_states.2"]; v == synth.SDXL && (len(hs) != len(last) || slices.Equal(hs, last)) {
			t.Errorf("%s: hidden_states.2 should be the last layer before the final norm", v)
		}
	}
}

func TestSDXLSecondEncoderProjects(t *testing.T) {
	dir := writeSD(t, synth.SDXL, synth.SDOptions{})
	ids := tokens(t, dir, "tokenizer_2", "a photo of a cat", "")
	res := runORT(t, filepath.Join(dir, "text_encoder_2", "model.onnx"), map[string]value{synth.InputIDs: ids},
		map[string][]int64{synth.TextEmbeds: {2, 48}, synth.LastHiddenState: {2, 77, 48}, "hidden_states.1": {2, 77, 48}})
	emb := res[synth.TextEmbeds]
	if slices.Equal(emb[:48], emb[48:]) || slices.Contains(emb, float32(math.NaN())) {
		t.Errorf("text_embeds %v", emb)
	}
}

// sdTable is sigma_t = sqrt((1-abar_t)/abar_t) of SD's schedule.
func sdTable(t *testing.T) []float64 {
	abar, err := schedule.DefaultSD().AlphasCumprod()
	if err != nil {
		t.Fatal(err)
	}
	table := make([]float64, len(abar))
	for i, a := range abar {
		table[i] = math.Sqrt((1 - a) / a)
	}
	return table
}

// level returns Alpha and Sigma at a (possibly fractional) timestep: sigma interpolated
// linearly in the table, as the UNet does.
func level(table []float64, ts float64) (alpha, sigma float64) {
	ts = min(max(ts, 0), 999)
	lo := math.Floor(ts)
	hi := min(lo+1, 999)
	w := ts - lo
	s := (1-w)*table[int(lo)] + w*table[int(hi)]
	alpha = 1 / math.Sqrt(1+s*s)
	return alpha, s * alpha
}

// closedForm is the exact eps (or v) of Gaussian data N(mu, SDDataStd^2) at x.
func closedForm(x, mu, alpha, sigma float64, vpred bool) float64 {
	s2 := synth.SDDataStd * synth.SDDataStd
	eps := sigma * (x - alpha*mu) / (alpha*alpha*s2 + sigma*sigma)
	if vpred {
		x0 := (x - sigma*eps) / alpha
		return alpha*eps - sigma*x0
	}
	return eps
}

func TestSDUNetIsExactGaussianDenoiser(t *testing.T) {
	const n, h, w = 3, 6, 10 // not square, to tell the axes apart
	pattern := synth.SDMeanPattern(h, w)
	table := sdTable(t)
	for _, tt := range []struct {
		v     synth.SDVariant
		ts    []float64 // per row, or one value for all
		shape []int64   // of the timestep
		cross int64
		shift float64 // the extra conditioning's term in mu
		tol   float64
	}{
		{synth.SD15, []float64{981}, []int64{1}, 32, 0, 2e-5},
		{synth.SD15Optimum, []float64{37}, []int64{}, 32, 0, 2e-5},
		{synth.SD15FP16, []float64{999, 400, 1}, []int64{n}, 32, 0, 2e-3},
		{synth.SD2V, []float64{999, 500.5, 0.25}, []int64{n}, 40, 0, 2e-5},
		{synth.SDTurbo, []float64{999, 749, 250}, []int64{n}, 40, 0, 2e-5},
		{synth.SDXL, []float64{801, 601, 1}, []int64{n}, 80, 1e-3 * (4 * 1024.0 / 6) / 1024, 2e-5},
		{synth.LCM, []float64{759, 499, 259}, []int64{n}, 32, 0.05 * math.Tanh(0.3), 2e-5},
	} {
		t.Run(string(tt.v), func(t *testing.T) {
			dir := writeSD(t, tt.v, synth.SDOptions{})
			s := openSD(t, dir, "unet")
			shapes := models.Shapes{synth.Sample: {n, 4, h, w}, synth.Timestep: tt.shape, synth.EncoderHiddenStates: {n, 77, tt.cross}}
			if tt.v == synth.SDXL {
				shapes[synth.TextEmbeds] = []int64{n, 48}
				shapes[synth.TimeIDs] = []int64{n, 6}
			}
			if tt.v == synth.LCM {
				shapes[synth.TimestepCond] = []int64{n, 256}
			}
			call, err := s.NewCall(shapes)
			if err != nil {
				t.Fatal(err)
			}
			defer call.Close()
			x, _ := call.Float32(synth.Sample)
			copy(x, noise(11, len(x)))
			for i := range x {
				x[i] *= 3
			}
			if in, ok := s.Input(synth.Timestep); ok && in.Type.IsFloat() {
				ts, _ := call.Float32(synth.Timestep)
				for i := range ts {
					ts[i] = float32(tt.ts[i])
				}
			} else {
				ts, _ := call.Int64(synth.Timestep)
				for i := range ts {
					ts[i] = int64(tt.ts[i])
				}
			}
			if tt.v == synth.SDXL {
				ids, _ := call.Float32(synth.TimeIDs)
				for r := range n {
					copy(ids[6*r:], []float32{1024, 1024, 0, 0, 1024, 1024})
				}
			}
			if tt.v == synth.LCM {
				cond, _ := call.Float32(synth.TimestepCond)
				for i := range cond {
					cond[i] = 0.3
				}
			}
			if err := call.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			out, shape, _ := call.Output(synth.OutSample)
			if !slices.Equal(shape, []int64{n, 4, h, w}) {
				t.Fatalf("out_sample shape %v", shape)
			}
			xin := slices.Clone(x)
			if tt.v == synth.SD15FP16 { // the model sees x rounded to float16
				buf := make([]byte, 2*len(x))
				models.EncodeFloat16(buf, x)
				models.DecodeFloat16(xin, buf)
			}
			worst := 0.0
			for r := range n {
				alpha, sigma := level(table, tt.ts[min(r, len(tt.ts)-1)])
				for k := range 4 * h * w {
					i := r*4*h*w + k
					want := closedForm(float64(xin[i]), float64(pattern[k])+tt.shift, alpha, sigma, tt.v == synth.SD2V)
					worst = max(worst, math.Abs(float64(out[i])-want)/(1+math.Abs(want)))
				}
			}
			t.Logf("largest relative error against the closed form: %.3g", worst)
			if worst > tt.tol {
				t.Errorf("largest relative error against the closed form %.3g, want <= %g", worst, tt.tol)
			}
		})
	}
}

// conditioning encodes prompts as a pipeline does and returns the UNet's conditioning inputs:
// encoder_hidden_states (SDXL: both encoders' penultimate hidden states side by side), and
// SDXL's text_embeds (with zero time_ids) or LCM's timestep_cond (zeros).
func conditioning(t *testing.T, dir string, v synth.SDVariant, prompts ...string) map[string]value {
	t.Helper()
	n := int64(len(prompts))
	in := map[string]value{}
	if v != synth.SDXL {
		d := int64(32)
		if v == synth.SD2V || v == synth.SDTurbo {
			d = 40
		}
		res := runORT(t, filepath.Join(dir, "text_encoder", "model.onnx"), map[string]value{synth.InputIDs: tokens(t, dir, "tokenizer", prompts...)},
			map[string][]int64{synth.LastHiddenState: {n, 77, d}})
		in[synth.EncoderHiddenStates] = value{shape: []int64{n, 77, d}, f: res[synth.LastHiddenState]}
		if v == synth.LCM {
			in[synth.TimestepCond] = value{shape: []int64{n, 256}, f: make([]float32, n*256)}
		}
		return in
	}
	r1 := runORT(t, filepath.Join(dir, "text_encoder", "model.onnx"), map[string]value{synth.InputIDs: tokens(t, dir, "tokenizer", prompts...)},
		map[string][]int64{"hidden_states.1": {n, 77, 32}})["hidden_states.1"]
	r2 := runORT(t, filepath.Join(dir, "text_encoder_2", "model.onnx"), map[string]value{synth.InputIDs: tokens(t, dir, "tokenizer_2", prompts...)},
		map[string][]int64{"hidden_states.1": {n, 77, 48}, synth.TextEmbeds: {n, 48}})
	ehs := make([]float32, 0, n*77*80)
	for i := range n * 77 {
		ehs = append(ehs, r1[i*32:(i+1)*32]...)
		ehs = append(ehs, r2["hidden_states.1"][i*48:(i+1)*48]...)
	}
	in[synth.EncoderHiddenStates] = value{shape: []int64{n, 77, 80}, f: ehs}
	in[synth.TextEmbeds] = value{shape: []int64{n, 48}, f: r2[synth.TextEmbeds]}
	in[synth.TimeIDs] = value{shape: []int64{n, 6}, f: make([]float32, n*6)}
	return in
}

// TestSDEmptyPromptMeanIsPattern checks the contract that makes unconditional sampling
// checkable in closed form: the empty prompt's mean is SDMeanPattern, and a real prompt moves it.
func TestSDEmptyPromptMeanIsPattern(t *testing.T) {
	const h, w = 8, 8
	table := sdTable(t)
	pattern := synth.SDMeanPattern(h, w)
	for _, v := range synth.SDVariants {
		dir := writeSD(t, v, synth.SDOptions{})
		in := conditioning(t, dir, v, "", "a photo of a cat")
		in[synth.Sample] = value{shape: []int64{2, 4, h, w}, f: noise(8, 2*4*h*w)}
		const at = 700
		switch v {
		case synth.SD15:
			in[synth.Timestep] = value{shape: []int64{1}, i: []int64{at}}
		case synth.SD15Optimum:
			in[synth.Timestep] = value{shape: []int64{}, f: []float32{at}}
		case synth.LCM:
			in[synth.Timestep] = value{shape: []int64{2}, i: []int64{at, at}}
		default:
			in[synth.Timestep] = value{shape: []int64{2}, f: []float32{at, at}}
		}
		out := runORT(t, filepath.Join(dir, "unet", "model.onnx"), in, map[string][]int64{synth.OutSample: {2, 4, h, w}})[synth.OutSample]
		x := in[synth.Sample].f
		if v == synth.SD15FP16 {
			buf := make([]byte, 2*len(x))
			models.EncodeFloat16(buf, x)
			models.DecodeFloat16(x, buf)
		}
		alpha, sigma := level(table, at)
		worst, moved := 0.0, 0.0
		for k := range 4 * h * w {
			for r := range 2 {
				want := closedForm(float64(x[r*4*h*w+k]), float64(pattern[k]), alpha, sigma, v == synth.SD2V)
				diff := math.Abs(float64(out[r*4*h*w+k])-want) / (1 + math.Abs(want))
				if r == 0 {
					worst = max(worst, diff)
				} else {
					moved = max(moved, diff)
				}
			}
		}
		tol := 1e-4
		if v == synth.SD15FP16 {
			tol = 3e-3
		}
		if worst > tol || moved < 0.02 {
			t.Errorf("%s: the empty prompt is %.3g from the pattern's closed form (want <= %g), a cat prompt %.3g (want a visible move)", v, worst, tol, moved)
		}
	}
}

func TestSDConvBallastIsSmall(t *testing.T) {
	const n, hw = 2, 8
	eps := map[int][]float32{}
	for _, convs := range []int{0, 3} {
		dir := writeSD(t, synth.SD2V, synth.SDOptions{Convs: convs})
		res := runORT(t, filepath.Join(dir, "unet", "model.onnx"), map[string]value{
			synth.Sample:              {shape: []int64{n, 4, hw, hw}, f: noise(3, n*4*hw*hw)},
			synth.Timestep:            {shape: []int64{n}, f: []float32{500, 100}},
			synth.EncoderHiddenStates: {shape: []int64{n, 5, 40}, f: noise(4, n*5*40)},
		}, map[string][]int64{synth.OutSample: {n, 4, hw, hw}})
		eps[convs] = res[synth.OutSample]
	}
	diff := 0.0
	for i := range eps[0] {
		diff = max(diff, math.Abs(float64(eps[3][i]-eps[0][i])))
	}
	if diff == 0 || diff > 0.05 {
		t.Errorf("the conv ballast changes the output by up to %g, want a small nonzero perturbation", diff)
	}
}

func TestSDVAERoundTrip(t *testing.T) {
	const n, h, w = 2, 4, 6
	for _, v := range []synth.SDVariant{synth.SD15, synth.SD15FP16, synth.SDXL} {
		dir := writeSD(t, v, synth.SDOptions{})
		scaling := 0.18215
		if v == synth.SDXL {
			scaling = 0.13025
		}
		// Scaled latents like the UNet's data: N(pattern, 0.5^2), divided by the scaling factor.
		z := noise(5, n*4*h*w)
		pattern := synth.SDMeanPattern(h, w)
		for i := range z {
			z[i] = float32((float64(pattern[i%len(pattern)]) + 0.8*float64(z[i])) / scaling)
		}
		img := runORT(t, filepath.Join(dir, "vae_decoder", "model.onnx"),
			map[string]value{synth.LatentSample: {shape: []int64{n, 4, h, w}, f: z}},
			map[string][]int64{synth.Sample: {n, 3, 8 * h, 8 * w}})[synth.Sample]
		saturated, lo, hi := 0, float32(1), float32(-1)
		for _, p := range img {
			if math.Abs(float64(p)) > 0.98 {
				saturated++
			}
			lo, hi = min(lo, p), max(hi, p)
		}
		t.Logf("%s: decoded pixels in [%.2f, %.2f], %d of %d saturated", v, lo, hi, saturated, len(img))
		if saturated > len(img)/50 || hi-lo < 0.5 {
			t.Errorf("%s: decoded pixels in [%.2f, %.2f], %d of %d saturated", v, lo, hi, saturated, len(img))
		}

		out := synth.LatentSample
		if v != synth.SD15 {
			out = synth.LatentParameters
		}
		channels := int64(4)
		if out == synth.LatentParameters {
			channels = 8
		}
		lat := runORT(t, filepath.Join(dir, "vae_encoder", "model.onnx"),
			map[string]value{synth.Sample: {shape: []int64{n, 3, 8 * h, 8 * w}, f: img}},
			map[string][]int64{out: {n, channels, h, w}})[out]
		tol := 0.02 / scaling // the encoder inverts the decoder up to rounding
		if v == synth.SD15 {
			tol = 0.25 // a sample: mean + exp(-3) noise
		}
		if v == synth.SD15FP16 {
			tol = 0.05 / scaling
		}
		for b := range n {
			for k := range 4 * h * w {
				got, want := lat[b*int(channels)*h*w+k], z[b*4*h*w+k]
				if math.Abs(float64(got-want)) > tol {
					t.Fatalf("%s: latent %d of row %d comes back as %g, was %g", v, k, b, got, want)
				}
			}
			if channels == 8 {
				if logvar := lat[b*8*h*w+4*h*w]; math.Abs(float64(logvar)+6) > 1e-3 {
					t.Errorf("%s: log-variance %g, want -6", v, logvar)
				}
			}
		}
	}
}

// TestSDEndToEnd runs a prompt through tokenizer, text encoder, 50 DDIM steps of the UNet and
// the decoder, and checks what the closed form predicts: deterministic DDIM from noise drawn at
// the first level lands on mu + s*z.
func TestSDEndToEnd(t *testing.T) {
	const n, hw, steps = 16, 8, 50
	dir := writeSD(t, synth.SD15Optimum, synth.SDOptions{})
	ids := tokens(t, dir, "tokenizer", "a photo of a cat", "")
	te := runORT(t, filepath.Join(dir, "text_encoder", "model.onnx"), map[string]value{synth.InputIDs: ids},
		map[string][]int64{synth.LastHiddenState: {2, 77, 32}})[synth.LastHiddenState]
	cond := te[:77*32]

	unet := openSD(t, dir, "unet")
	call, err := unet.NewCall(models.Shapes{synth.Sample: {n, 4, hw, hw}, synth.Timestep: {}, synth.EncoderHiddenStates: {n, 77, 32}})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	x, _ := call.Float32(synth.Sample)
	ts, _ := call.Float32(synth.Timestep)
	ehs, _ := call.Float32(synth.EncoderHiddenStates)
	for r := range n {
		copy(ehs[r*77*32:], cond)
	}
	eps := func(at int) []float32 {
		ts[0] = float32(at)
		if err := call.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		out, _, _ := call.Output(synth.OutSample)
		return out
	}
	table := sdTable(t)

	// mu from one call at x = 0: eps = -Sigma Alpha mu / (Alpha^2 s^2 + Sigma^2).
	s2 := synth.SDDataStd * synth.SDDataStd
	clear(x)
	a, s := level(table, 500)
	e0 := eps(500)
	mu := make([]float64, len(x))
	for i := range mu {
		mu[i] = -float64(e0[i]) * (a*a*s2 + s*s) / (s * a)
	}
	// The prompt moves the mean away from the pattern alone.
	pattern := synth.SDMeanPattern(hw, hw)
	textTerm := 0.0
	for c := range 4 {
		textTerm = max(textTerm, math.Abs(mu[c*hw*hw]-float64(pattern[c*hw*hw])))
	}
	if textTerm < 0.05 {
		t.Errorf("the prompt shifts mu by only %g", textTerm)
	}

	times, err := schedule.Timesteps(schedule.Leading, 1000, steps, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, s = level(table, float64(times[0]))
	z := noise(21, len(x))
	for i := range z {
		z[i] *= float32(math.Sqrt(3)) // unit variance
		x[i] = float32(a*mu[i] + math.Sqrt(a*a*s2+s*s)*float64(z[i]))
	}
	x0 := make([]float64, len(x))
	for k, tk := range times {
		a, s := level(table, float64(tk))
		e := eps(tk)
		na, ns := level(table, 0) // set_alpha_to_one false: the last step lands at abar_0
		if k+1 < steps {
			na, ns = level(table, float64(times[k+1]))
		}
		for i := range x {
			x0[i] = (float64(x[i]) - s*float64(e[i])) / a
			x[i] = float32(na*x0[i] + ns*float64(e[i]))
		}
	}
	worst := 0.0
	for i := range x0 {
		worst = max(worst, math.Abs(x0[i]-(mu[i]+synth.SDDataStd*float64(z[i]))))
	}
	t.Logf("prompt term of mu[0] %.3f; DDIM lands within %.3g of mu + s z", textTerm, worst)
	if worst > 0.06 {
		t.Errorf("DDIM lands up to %g away from mu + s z", worst)
	}

	lat := make([]float32, len(x0))
	for i, v := range x0 {
		lat[i] = float32(v / 0.18215)
	}
	img := runORT(t, filepath.Join(dir, "vae_decoder", "model.onnx"),
		map[string]value{synth.LatentSample: {shape: []int64{n, 4, hw, hw}, f: lat}},
		map[string][]int64{synth.Sample: {n, 3, 8 * hw, 8 * hw}})[synth.Sample]
	var sum, sq float64
	for _, p := range img {
		sum += float64(p)
		sq += float64(p) * float64(p)
	}
	mean := sum / float64(len(img))
	std := math.Sqrt(sq/float64(len(img)) - mean*mean)
	t.Logf("decoded images: mean %.3f, std %.3f", mean, std)
	if std < 0.1 || math.Abs(mean) > 0.8 {
		t.Errorf("decoded images have mean %.3f and std %.3f: flat or saturated", mean, std)
	}
}

func BenchmarkSDUNet(b *testing.B) {
	for _, convs := range []int{0, 4} {
		b.Run(fmt.Sprintf("convs=%d", convs), func(b *testing.B) {
			dir := writeSD(b, synth.SD15Optimum, synth.SDOptions{Convs: convs})
			s := openSD(b, dir, "unet")
			call, err := s.NewCall(models.Shapes{synth.Sample: {16, 4, 8, 8}, synth.Timestep: {}, synth.EncoderHiddenStates: {16, 77, 32}})
			if err != nil {
				b.Fatal(err)
			}
			defer call.Close()
			x, _ := call.Float32(synth.Sample)
			copy(x, noise(1, len(x)))
			ts, _ := call.Float32(synth.Timestep)
			ts[0] = 500
			ctx := context.Background()
			for b.Loop() {
				if err := call.Run(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
