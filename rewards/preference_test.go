package rewards_test

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/onnxgraph"
	"github.com/fksteer/fksteer/models/synth"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/tokenizers/clip"
)

// TestPreferenceMatchesDirectComputation scores images with a synthetic CLIPModel-shaped scorer
// and the real CLIP tokenizer, and checks every score against the model run here directly on
// the same pixels and token ids: logits_per_image's diagonal, normalised as ImageReward is;
// LogitScale times the cosine of the embeddings; and the PickScore preset.
func TestPreferenceMatchesDirectComputation(t *testing.T) {
	tokDir := filepath.Dir(testenv.SharedFile(t, "tokenizers/clip/vocab.json"))
	data, err := synth.CLIPScorer(synth.ViT{Size: 32, Patch: 16, Dim: 16, Seed: 5}, synth.CLIPText{Length: 77, Vocab: 64}, 8)
	path := writeModel(t, "clip.onnx", data, err)
	tok, err := clip.Load(tokDir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	imgs := randomImages(3, n, 3, 32, 32)
	prompt := "a photo of a red cat"
	row, _ := tok.EncodePadded(prompt)
	ids := make([]int64, 0, n*77)
	for range n {
		for _, id := range row {
			ids = append(ids, int64(id))
		}
	}
	outs := runModel(t, path,
		map[string][]float32{synth.PixelValues: normalised(imgs, rewards.CLIPMean, rewards.CLIPStd)},
		map[string][]int64{synth.InputIDs: ids},
		models.Shapes{synth.PixelValues: {n, 3, 32, 32}, synth.InputIDs: {n, 77}},
		synth.LogitsPerImage, synth.ImageEmbeds, synth.TextEmbeds)
	logits, img, txt := outs[0], outs[1], outs[2]

	score := func(spec string) []float64 {
		t.Helper()
		r, err := rewards.Parse("preference:model="+path+",tokenizer="+tokDir+spec, rewards.Env{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got := make([]float64, n)
		if err := r.Score(context.Background(), imgs, prompt, got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	imageReward := score(",shift=0.16717362830052426,scale=1.0333394966054072")
	cosine := score(",score=cosine,logit-scale=100")
	pick := score(",preset=pickscore")
	for i := range n {
		diag := float64(logits[i*n+i])
		if want := (diag - 0.16717362830052426) / 1.0333394966054072; math.Abs(imageReward[i]-want) > 1e-5 {
			t.Errorf("image %d: normalised logit %g, want %g", i, imageReward[i], want)
		}
		want := 100 * cos64(img[i*8:(i+1)*8], txt[i*8:(i+1)*8])
		if math.Abs(cosine[i]-want) > 1e-4 || math.Abs(pick[i]-want) > 1e-4 || math.Abs(want-diag) > 1e-3 {
			t.Errorf("image %d: cosine %g, pickscore %g, want 100 cos = %g (logit %g)", i, cosine[i], pick[i], want, diag)
		}
	}
	// The prompt matters: the same images score differently for another prompt. The tokenizer
	// files lie beside the model here, as optimum exports them, so no tokenizer= is needed.
	linkFiles(t, tokDir, filepath.Dir(path), "vocab.json", "merges.txt")
	r, err := rewards.Parse("preference:model="+path, rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	other := make([]float64, n)
	if err := r.Score(context.Background(), imgs, "an old map of the sea", other); err != nil {
		t.Fatal(err)
	}
	if math.Abs(other[0]-float64(logits[0])) < 1e-6 {
		t.Errorf("another prompt gave the same score %g", other[0])
	}
}

func TestPreferenceConfigurationErrors(t *testing.T) {
	data, err := synth.CLIPScorer(synth.ViT{Size: 32, Patch: 16, Dim: 8, Seed: 1}, synth.CLIPText{Length: 77, Vocab: 16}, 4)
	path := writeModel(t, "clip.onnx", data, err)
	for spec, want := range map[string]string{
		"preference:model=" + path:                        "tokenizer=DIR",
		"preference:model=" + path + ",text=none":         "neither the image",
		"preference:model=" + path + ",preset=aesthetics": "not one of",
	} {
		if _, err := rewards.Parse(spec, rewards.Env{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", spec, err, want)
		}
	}
}

// ImageReward's normalisation: the mean and std of its raw scores.
const irShift, irScale = 0.16717362830052426, 1.0333394966054072

// linkFiles links the named files of src into dst (made if missing).
func linkFiles(t *testing.T, src, dst string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := os.Symlink(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// imageRewardFolder writes an ImageReward-style model folder, model.onnx beside tokenizer/
// (bert-base-uncased's vocab.txt, linked from the shared folder), and returns the model's path.
func imageRewardFolder(t *testing.T, data []byte, err error) string {
	t.Helper()
	vocab := testenv.SharedFile(t, "tokenizers/bert-base-uncased/vocab.txt")
	path := writeModel(t, "model.onnx", data, err)
	linkFiles(t, filepath.Dir(vocab), filepath.Join(filepath.Dir(path), "tokenizer"), "vocab.txt")
	return path
}

// bertGolden returns the golden ids (padded to 35) of the given lines (1-based) of the shared
// bert-base-uncased golden.jsonl, with their prompts.
func bertGolden(t *testing.T, lines ...int) (texts []string, ids [][]int64) {
	t.Helper()
	f, err := os.Open(testenv.SharedFile(t, "tokenizers/bert-base-uncased/golden.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if !slices.Contains(lines, n) {
			continue
		}
		var c struct {
			Text string  `json:"text"`
			IDs  []int64 `json:"ids"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		texts, ids = append(texts, c.Text), append(ids, c.IDs)
	}
	if len(texts) != len(lines) {
		t.Fatalf("golden.jsonl has %d of lines %v", len(texts), lines)
	}
	return texts, ids
}

// TestImageRewardPreset scores non-square images with preset=imagereward on the synthetic
// ImageReward model, its tokenizer found in the tokenizer/ folder beside it, and checks every
// score against the model run here on inputs prepared by hand: the golden BERT ids (padded to
// 35, one prompt cut short) with a mask of 1 up to [SEP]; the images resized by PIL's bicubic
// rule (pilBicubic, 300 x 250 -> 268 x 224) and centre-cropped to 224, in CLIP's normalisation;
// then (raw - 0.16717362830052426) / 1.0333394966054072.
func TestImageRewardPreset(t *testing.T) {
	data, err := synth.ImageReward(synth.ViT{Size: 224, Patch: 32, Dim: 16, Seed: 11}, synth.BLIPText{Length: 35, Vocab: 30522})
	path := imageRewardFolder(t, data, err)
	// Line 2 is a short prompt, line 29 one longer than 35 tokens.
	prompts, golden := bertGolden(t, 2, 29)
	const n, h, w = 2, 300, 250 // portrait: resized to 268 x 224, rows 22..245 kept
	imgs := randomImages(7, n, 3, h, w)
	pixels := make([]float32, 0, n*3*224*224)
	for i := range n {
		for c := range 3 {
			plane := make([]float64, h*w)
			for j, v := range imgs.At(i)[c*h*w : (c+1)*h*w] {
				plane[j] = float64(v)
			}
			rh := 224 * h / w // 268, truncated as torchvision does
			resized := pilBicubic(plane, h, w, rh, 224)
			top := (rh - 224) / 2
			for _, v := range resized[top*224 : (top+224)*224] {
				pixels = append(pixels, float32((v-rewards.CLIPMean[c])/rewards.CLIPStd[c]))
			}
		}
	}

	r, err := rewards.Parse("preference:model="+path+",preset=imagereward", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for k, prompt := range prompts {
		ids, mask := make([]int64, 0, n*35), make([]int64, 0, n*35)
		used := slices.Index(golden[k], 102) + 1
		for range n {
			ids = append(ids, golden[k]...)
			for j := range 35 {
				mask = append(mask, int64(b2i(j < used)))
			}
		}
		raw := runModel(t, path,
			map[string][]float32{synth.PixelValues: pixels},
			map[string][]int64{synth.InputIDs: ids, synth.AttentionMask: mask},
			models.Shapes{synth.PixelValues: {n, 3, 224, 224}, synth.InputIDs: {n, 35}, synth.AttentionMask: {n, 35}},
			synth.Rewards)[0]
		got := make([]float64, n)
		if err := r.Score(context.Background(), imgs, prompt, got); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			want := (float64(raw[i]) - irShift) / irScale
			if math.Abs(got[i]-want) > 1e-5 {
				t.Errorf("prompt %d, image %d: reward %.6f, want %.6f (raw %.6f)", k, i, got[i], want, raw[i])
			}
		}
		t.Logf("prompt %q: rewards %.4f", prompt, got)
	}
}

// b2i is 1 for true.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pilBicubic resizes an h x w plane to oh x ow as PIL's Image.resize with BICUBIC does: for
// each output pixel along an axis, the source pixels within 2 * max(1, in/out) of its centre,
// weighted by Keys' cubic (a = -0.5) at their distance divided by max(1, in/out), normalised;
// rows first, then columns, clipping each pass to [0, 1] as 8-bit images are (PIL's rounding
// to 1/255 is left out).
func pilBicubic(src []float64, h, w, oh, ow int) []float64 {
	cubic := func(x float64) float64 {
		x = math.Abs(x)
		switch {
		case x < 1:
			return (1.5*x-2.5)*x*x + 1
		case x < 2:
			return ((-0.5*x+2.5)*x-4)*x + 2
		}
		return 0
	}
	// pass resamples n lines of in values (stride apart within a line, step apart between
	// lines) to out values each.
	pass := func(get func(line, i int) float64, lines, in, out int, set func(line, o int, v float64)) {
		scale := float64(in) / float64(out)
		stretch := math.Max(scale, 1)
		for o := range out {
			center := (float64(o) + 0.5) * scale
			lo := max(0, int(center-2*stretch+0.5))
			hi := min(in, int(center+2*stretch+0.5))
			for line := range lines {
				var sum, norm float64
				for i := lo; i < hi; i++ {
					wt := cubic((float64(i) + 0.5 - center) / stretch)
					sum += wt * get(line, i)
					norm += wt
				}
				set(line, o, math.Min(math.Max(sum/norm, 0), 1))
			}
		}
	}
	tmp := make([]float64, h*ow)
	pass(func(y, x int) float64 { return src[y*w+x] }, h, w, ow, func(y, x int, v float64) { tmp[y*ow+x] = v })
	out := make([]float64, oh*ow)
	pass(func(x, y int) float64 { return tmp[y*ow+x] }, ow, h, oh, func(x, y int, v float64) { out[y*ow+x] = v })
	return out
}

// TestImageRewardReceivesIDs reads back the exact input_ids and attention_mask the preset
// feeds an ImageReward-shaped model. The probe model returns, for each row, ids + 65536 * mask
// at all 35 positions as a [batch, 35] output; scoring 35 images makes that output square, so
// the reward reads its diagonal (as it reads logits_per_image), and image i's reward is
// position i of the prompt's encoding, normalised.
func TestImageRewardReceivesIDs(t *testing.T) {
	g := onnxgraph.New("imagereward_probe", synth.Opset)
	batch, l := onnxgraph.Sym("batch"), onnxgraph.Fixed(35)
	px := g.Input(synth.PixelValues, onnxgraph.Float32, batch, onnxgraph.Fixed(3), onnxgraph.Fixed(8), onnxgraph.Fixed(8))
	ids := g.Input(synth.InputIDs, onnxgraph.Int64, batch, l)
	mask := g.Input(synth.AttentionMask, onnxgraph.Int64, batch, l)
	toFloat := onnxgraph.AttrInt("to", int64(onnxgraph.Float32))
	sum := g.Op("Add", []string{g.Op("Cast", []string{ids}, toFloat),
		g.Op("Mul", []string{g.Op("Cast", []string{mask}, toFloat), g.Scalar(65536)})})
	// The pixels enter with weight 0, so that the image input is part of the graph.
	zero := g.Op("Mul", []string{g.Op("ReduceMean", []string{px}, onnxgraph.AttrInts("axes", 1, 2, 3), onnxgraph.AttrInt("keepdims", 0)), g.Scalar(0)})
	g.Node("Add", []string{sum, g.Op("Unsqueeze", []string{zero, g.Int64s(1)})}, []string{synth.Rewards})
	g.Output(synth.Rewards, onnxgraph.Float32, batch, l)
	data, err := g.Marshal()
	path := imageRewardFolder(t, data, err)

	r, err := rewards.Parse("preference:model="+path+",preset=imagereward", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	prompts, golden := bertGolden(t, 1, 5, 21, 29)
	imgs := randomImages(3, 35, 3, 8, 8)
	for k, prompt := range prompts {
		got := make([]float64, 35)
		if err := r.Score(context.Background(), imgs, prompt, got); err != nil {
			t.Fatal(err)
		}
		used := slices.Index(golden[k], 102) + 1
		var gotIDs, gotMask []int64
		for _, v := range got {
			raw := int64(math.Round(v*irScale + irShift))
			gotIDs, gotMask = append(gotIDs, raw%65536), append(gotMask, raw/65536)
		}
		if !slices.Equal(gotIDs, golden[k]) {
			t.Errorf("prompt %q: input_ids\n got  %v\n want %v", prompt, gotIDs, golden[k])
		}
		for j, m := range gotMask {
			if m != int64(b2i(j < used)) {
				t.Errorf("prompt %q: attention_mask %v, want 1 over the first %d", prompt, gotMask, used)
				break
			}
		}
	}
}

func TestImageRewardConfigurationErrors(t *testing.T) {
	data, err := synth.ImageReward(synth.ViT{Size: 32, Patch: 16, Dim: 8, Seed: 1}, synth.BLIPText{Length: 35, Vocab: 64})
	path := writeModel(t, "model.onnx", data, err)
	clipDir := filepath.Dir(testenv.SharedFile(t, "tokenizers/clip/vocab.json"))
	bertDir := filepath.Dir(testenv.SharedFile(t, "tokenizers/bert-base-uncased/vocab.txt"))
	for spec, want := range map[string]string{
		"preference:model=" + path + ",preset=imagereward":                                         "tokenizer=DIR",
		"preference:model=" + path + ",preset=imagereward,tokenizer=" + clipDir:                    "reads wordpiece ids",
		"preference:model=" + path + ",preset=imagereward,tokenizer=" + t.TempDir():                "holds no tokenizer",
		"preference:model=" + path + ",tokenizer=" + bertDir:                                       "takes 35 tokens, the tokenizer makes 512 (set text-length=35)",
		"preference:model=" + path + ",preset=imagereward,tokenizer=" + bertDir + ",text-length=1": "text-length=1",
	} {
		if _, err := rewards.Parse(spec, rewards.Env{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", spec, err, want)
		}
	}
	// Without the preset, text-length=35 makes a BERT folder fit.
	r, err := rewards.Parse("preference:model="+path+",tokenizer="+bertDir+",text-length=35", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}
