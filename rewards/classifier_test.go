package rewards_test

import (
	"compress/gzip"
	"context"
	"io"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// loadMNIST reads the MNIST test split (IDX format) as 28x28 images in [0, 1] and labels.
func loadMNIST(t *testing.T) (pixels.Images, []byte) {
	t.Helper()
	imgPath := testenv.SharedFile(t, "models/mnist-cnn-classifier/t10k-images-idx3-ubyte.gz")
	lblPath := testenv.SharedFile(t, "models/mnist-cnn-classifier/t10k-labels-idx1-ubyte")
	f, err := os.Open(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := os.ReadFile(lblPath)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	if len(raw) != 16+n*28*28 || len(labels) != 8+n {
		t.Fatalf("unexpected MNIST file sizes %d, %d", len(raw), len(labels))
	}
	imgs := pixels.NewImages(n, 1, 28, 28)
	for i, b := range raw[16:] {
		imgs.Pix[i] = float32(b) / 255
	}
	return imgs, labels[8:]
}

func TestClassifierRewardReachesStatedMNISTAccuracy(t *testing.T) {
	modeltest.Runtime(t)
	path := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	imgs, labels := loadMNIST(t)
	r, err := rewards.NewClassifier(path, rewards.ClassifierOptions{Target: 0, Mean: 0.5, Std: 0.5, Score: rewards.Logit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	// Score every image against every class in batches of 500 and take the argmax: the
	// classifier's top-1 prediction, measured through the reward's own preprocessing.
	const batch = 500
	best := make([]float64, imgs.N)
	pred := make([]int, imgs.N)
	for i := range best {
		best[i] = math.Inf(-1)
	}
	scores := make([]float64, batch)
	for class := range 10 {
		cr, err := rewards.NewClassifier(path, rewards.ClassifierOptions{Target: class, Mean: 0.5, Std: 0.5, Score: rewards.Logit})
		if err != nil {
			t.Fatal(err)
		}
		for lo := 0; lo < imgs.N; lo += batch {
			sub := pixels.Images{N: batch, C: 1, H: 28, W: 28, Pix: imgs.Pix[lo*784 : (lo+batch)*784]}
			if err := cr.Score(context.Background(), sub, "", scores); err != nil {
				t.Fatal(err)
			}
			for j, s := range scores {
				if s > best[lo+j] {
					best[lo+j], pred[lo+j] = s, class
				}
			}
		}
		cr.Close()
	}
	correct := 0
	for i, p := range pred {
		if p == int(labels[i]) {
			correct++
		}
	}
	t.Logf("MNIST test split: %d/10000 correct", correct)
	// SOURCE.txt states 9877/10000 with ONNX Runtime 1.24.1 and the same preprocessing.
	if correct != 9877 {
		t.Errorf("accuracy %d/10000, the model's stated accuracy is 9877/10000", correct)
	}
}

func TestClassifierLogProbIsNormalised(t *testing.T) {
	modeltest.Runtime(t)
	path := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	imgs, _ := loadMNIST(t)
	sub := pixels.Images{N: 4, C: 1, H: 28, W: 28, Pix: imgs.Pix[:4*784]}
	total := make([]float64, 4)
	for class := range 10 {
		r, err := rewards.Parse("classifier:model="+path+",target="+string(rune('0'+class))+",score=prob", rewards.Env{})
		if err != nil {
			t.Fatal(err)
		}
		p := make([]float64, 4)
		if err := r.Score(context.Background(), sub, "", p); err != nil {
			t.Fatal(err)
		}
		lp := make([]float64, 4)
		r2, err := rewards.Parse("classifier:model="+path+",target="+string(rune('0'+class)), rewards.Env{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r2.Score(context.Background(), sub, "", lp); err != nil {
			t.Fatal(err)
		}
		for i := range p {
			total[i] += p[i]
			if math.Abs(math.Exp(lp[i])-p[i]) > 1e-12 {
				t.Errorf("exp(logprob) %g != prob %g", math.Exp(lp[i]), p[i])
			}
		}
		r.Close()
		r2.Close()
	}
	for i, s := range total {
		if math.Abs(s-1) > 1e-9 {
			t.Errorf("image %d: probabilities sum to %g", i, s)
		}
	}
}

func TestClassifierTargetFromPrompt(t *testing.T) {
	modeltest.Runtime(t)
	path := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	imgs, labels := loadMNIST(t)
	r, err := rewards.Parse("classifier:model="+path, rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sub := pixels.Images{N: 1, C: 1, H: 28, W: 28, Pix: imgs.Pix[:784]}
	s := make([]float64, 1)
	prompt := "a handwritten " + string(rune('0'+labels[0]))
	if err := r.Score(context.Background(), sub, prompt, s); err != nil {
		t.Fatal(err)
	}
	if s[0] < math.Log(0.5) {
		t.Errorf("log p(true label %d) = %g for a correctly classified test digit", labels[0], s[0])
	}
	if err := r.Score(context.Background(), sub, "no digit here", s); err == nil {
		t.Error("a prompt without a class number and no target option should be an error")
	}
}

func TestParseRejectsUnknownRewardsAndOptions(t *testing.T) {
	if _, err := rewards.Parse("colour:target=#fff", rewards.Env{}); err == nil || !strings.Contains(err.Error(), `did you mean "color"`) {
		t.Errorf("unknown reward: %v", err)
	}
	if _, err := rewards.Parse("color:targte=#fff", rewards.Env{}); err == nil || !strings.Contains(err.Error(), `did you mean "target"`) {
		t.Errorf("unknown option: %v", err)
	}
	if _, err := rewards.Parse("color:target=#ggg", rewards.Env{}); err == nil {
		t.Error("bad colour accepted")
	}
}

func TestColorReward(t *testing.T) {
	r, err := rewards.Parse("color:target=#ff0000", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	imgs := pixels.NewImages(3, 3, 2, 2)
	fill := func(i int, rgb [3]float32) {
		for c := range 3 {
			for p := range 4 {
				imgs.Pix[(i*3+c)*4+p] = rgb[c]
			}
		}
	}
	fill(0, [3]float32{1, 0, 0})
	fill(1, [3]float32{0, 1, 1})
	fill(2, [3]float32{0.5, 0, 0})
	s := make([]float64, 3)
	if err := r.Score(context.Background(), imgs, "", s); err != nil {
		t.Fatal(err)
	}
	// Hand-computed: exact match 1; the opposite corner 0; half red is 0.5 away: 1 - 0.5/sqrt(3).
	want := []float64{1, 0, 1 - 0.5/math.Sqrt(3)}
	for i := range want {
		if math.Abs(s[i]-want[i]) > 1e-7 {
			t.Errorf("image %d: score %g, want %g", i, s[i], want[i])
		}
	}
}
