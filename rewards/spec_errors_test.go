package rewards_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// wantSpecError parses spec and checks that it fails with exactly the message want.
func wantSpecError(t *testing.T, spec string, env rewards.Env, want string) {
	t.Helper()
	r, err := rewards.Parse(spec, env)
	if err == nil {
		r.Close()
		t.Errorf("%s: parsed; want the error %q", spec, want)
		return
	}
	if err.Error() != want {
		t.Errorf("%s:\n got %q\nwant %q", spec, err.Error(), want)
	}
}

// TestSpecErrorsSayWhatIsWrong: a constructor's error about a missing, invalid or conflicting
// option reaches the user as itself, whatever options come after it; only a key that no getter
// of the reward reads is called unknown, with the closest valid key. Before, Parse looked for
// unknown keys after the constructor had failed, and every key the constructor had not reached
// yet looked unknown.
func TestSpecErrorsSayWhatIsWrong(t *testing.T) {
	// An empty model folder: no default model file exists, so nothing can load.
	env := rewards.Env{ModelDir: t.TempDir()}
	for _, c := range []struct{ spec, want string }{
		{"classifier:target=3,crop=28",
			"reward classifier: option model=PATH (an ONNX image classifier) is required"},
		{"ocr:detect=maybe",
			`reward ocr: option detect="maybe" is not true or false`},
		{"ocr:detect=false,det=det.onnx,thresh=0.2",
			"reward ocr: det= names a detector, but detect=false turns detection off"},
		{"classifier:model=m.onnx,target=seven,crop=28,score=prob",
			`reward classifier: target="seven": not a class number (name classes with labels=FILE to use their names)`},
		{"classifier:model=m.onnx,target=-5,crop=28",
			`reward classifier: target="-5": class numbers start at 0 (-1, or no target, reads the class from the prompt)`},
		{"dino:model=m.onnx,patch=0.5",
			"reward dino: option ref=PATH (a reference image, or a folder of them; repeat ref= for more) is required"},
		// Truly unknown keys, found before the constructor stops on the missing model.
		{"classifier:target=3,crp=28",
			`reward classifier: unknown option "crp" (did you mean "crop"?)`},
		{"ocr:detect=maybe,tresh=0.2",
			`reward ocr: unknown option "tresh" (did you mean "thresh"?)`},
		{"color:target=#ffffff,zzz=1",
			`reward color: unknown option "zzz" (valid: provider, target)`},
		{"color:target=#fff,target=#000",
			"reward color: option target is given 2 times; it takes one value"},
	} {
		wantSpecError(t, c.spec, env, c.want)
	}
}

// TestSpecWeightsAreFiniteNumbers: NaN and infinite weights are refused as weights (before,
// "nan*ocr" was an unknown reward named "nan*ocr"), anywhere in a sum; a weight with an
// exponent sign ("1e+3") stays one term.
func TestSpecWeightsAreFiniteNumbers(t *testing.T) {
	hint := ": write weights as numbers such as 0.7 or -1 (0.7*ocr+0.3*color:target=#ffffff)"
	for _, c := range []struct{ spec, want string }{
		{"nan*ocr", `reward weight "nan" in "nan*ocr" is not a finite number` + hint},
		{"inf*color:target=#fff", `reward weight "inf" in "inf*color:target=#fff" is not a finite number` + hint},
		{"-Infinity*color:target=#fff", `reward weight "-Infinity" in "-Infinity*color:target=#fff" is not a finite number` + hint},
		{"1e999*color:target=#fff", `reward weight "1e999" in "1e999*color:target=#fff" is not a finite number` + hint},
		{"0.5*color:target=#fff+NaN*color:target=#000", `reward weight "NaN" in "NaN*color:target=#000" is not a finite number` + hint},
		{"half*color:target=#fff", `reward weight "half" in "half*color" is not a number` + hint},
	} {
		wantSpecError(t, c.spec, rewards.Env{}, c.want)
	}
	r, err := rewards.Parse("1e+3*color:target=#fff+2*color:target=#000", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, ok := r.(*rewards.Composite)
	if !ok {
		t.Fatalf("got %T, want a composite", r)
	}
	if p := c.Parts(); len(p) != 2 || p[0].Weight != 1000 || p[1].Weight != 2 {
		t.Errorf("parts %+v, want weights 1000 and 2", p)
	}
}

// TestClassifierTargetAndCropRanges: with the real MNIST classifier (10 classes), target must be
// 0 to 9 and crop at most the image size; both are checked when the model is loaded (the crop
// where the caller names the image size, else on each Score), with messages naming the range.
// Before, target=-5 read the class from the prompt, target=12 failed only on the first Score,
// and crop=100 on 28x28 images cropped nothing, silently.
func TestClassifierTargetAndCropRanges(t *testing.T) {
	modeltest.Runtime(t)
	model := testenv.SharedFile(t, "models/mnist-cnn-classifier/mnist-8.onnx")
	spec := "classifier:model=" + model
	wantSpecError(t, spec+",target=12,crop=28", rewards.Env{},
		"reward classifier: target=12, but "+model+" has 10 classes: target must be 0 to 9")
	wantSpecError(t, spec+",target=3,crop=100", rewards.Env{ImageHeight: 28, ImageWidth: 28},
		"reward classifier: crop=100 is larger than the 28x28 images: crop must be 1 to 28 (0: no crop)")

	// Where the size is unknown, Score refuses images smaller than the crop and scores others.
	r, err := rewards.Parse(spec+",target=9,crop=100", rewards.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dst := make([]float64, 1)
	err = r.Score(context.Background(), pixels.NewImages(1, 1, 28, 28), "", dst)
	if want := "reward classifier: crop=100 is larger than the 28x28 images: crop must be 1 to 28 (0: no crop)"; err == nil || err.Error() != want {
		t.Errorf("crop=100 on 28x28 images: %v; want %q", err, want)
	}
	if err := r.Score(context.Background(), pixels.NewImages(1, 1, 128, 128), "", dst); err != nil {
		t.Errorf("crop=100 on 128x128 images: %v", err)
	}
	// A class named by the prompt is checked against the model too.
	r2, err := rewards.Parse(spec+",crop=28", rewards.Env{ImageHeight: 28, ImageWidth: 28})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	err = r2.Score(context.Background(), pixels.NewImages(1, 1, 28, 28), "the digit 42", dst)
	if err == nil || !strings.Contains(err.Error(), "target class 42, but the model has 10 classes: the class must be 0 to 9") {
		t.Errorf("prompt naming class 42: %v", err)
	}
}
