package rewards_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// TestClassifierLabelsAndOptions: with labels=FILE the prompt names the class by word (the
// longest label it contains) and target= may be a label; size= must agree with a fixed input;
// prob and logprob agree on the same class.
func TestClassifierLabelsAndOptions(t *testing.T) {
	modeltest.Runtime(t)
	path := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	imgs, labels := loadMNIST(t)
	names := []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
	lf := filepath.Join(t.TempDir(), "labels.txt")
	if err := os.WriteFile(lf, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	first := pixels.Images{N: 1, C: 1, H: 28, W: 28, Pix: imgs.Pix[:784]}
	truth := names[labels[0]]
	score := func(spec, prompt string) float64 {
		t.Helper()
		r, err := rewards.Parse(spec, rewards.Env{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		s := make([]float64, 1)
		if err := r.Score(context.Background(), first, prompt, s); err != nil {
			t.Fatal(err)
		}
		return s[0]
	}
	byWord := score("classifier:model="+path+",labels="+lf, "a handwritten "+truth+" on paper")
	byNumber := score("classifier:model="+path, "the digit "+string(rune('0'+labels[0])))
	byLabel := score("classifier:model="+path+",labels="+lf+",target="+truth+",score=prob", "")
	if byWord != byNumber || math.Abs(math.Exp(byWord)-byLabel) > 1e-12 {
		t.Errorf("log p by word %g, by number %g; p by target label %g", byWord, byNumber, byLabel)
	}
	// The same digit as an RGB image: a one-channel model reads its BT.601 luma, which for
	// equal channels is the grey value (0.299 + 0.587 + 0.114 = 1), so the score is unchanged.
	rgb := pixels.NewImages(1, 3, 28, 28)
	for c := range 3 {
		copy(rgb.Pix[c*784:(c+1)*784], first.Pix)
	}
	r, err := rewards.Parse("classifier:model="+path+",labels="+lf+",mean=0.5,std=0.5", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := make([]float64, 1)
	if err := r.Score(context.Background(), rgb, "a "+truth, s); err != nil {
		t.Fatal(err)
	}
	if math.Abs(s[0]-byWord) > 1e-5 {
		t.Errorf("RGB copy scores %g, grey %g", s[0], byWord)
	}
	if _, err := rewards.Parse("classifier:model="+path+",size=32", rewards.Env{}); err == nil || !strings.Contains(err.Error(), "size=") {
		t.Errorf("size=32 for a 28x28 model: error %v", err)
	}
	if _, err := rewards.Parse("classifier:model="+path+",target=seven", rewards.Env{}); err == nil || !strings.Contains(err.Error(), "labels=") {
		t.Errorf("a target name without labels: error %v", err)
	}
}
