package rewards_test

import (
	"context"
	"fmt"
	"image/color"
	"testing"

	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"

	"github.com/fksteer/fksteer/internal/testenv"
	"github.com/fksteer/fksteer/models/modeltest"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// The reward benchmarks time one Score call on K = 16 particles: the reward's cost at every
// resampling step of one prompt.
const benchK = 16

// textBatch renders K images of size x size, each with a short line of text in a different
// colour, like the particles of a text-rendering prompt.
func textBatch(b *testing.B, size int) pixels.Images {
	imgs := pixels.NewImages(benchK, 3, size, size)
	for i := range benchK {
		fg := color.RGBA{uint8(40 * (i % 4)), uint8(30 * (i % 5)), uint8(200 - 10*i), 255}
		ttf := goregular.TTF
		if i%2 == 1 {
			ttf = gobold.TTF
		}
		img := renderText(b, ttf, float64(size)/10, fg, color.RGBA{240, 240, 230, 255}, size, size, "Open Sesame", fmt.Sprintf("particle %d", i))
		copy(imgs.At(i), rewards.FromImage(img).Pix)
	}
	return imgs
}

// BenchmarkOCRReward: detection on 16 images of 512 x 512 (one detector Run, input 16 x 3 x
// 512 x 512) and recognition of every text box (batched by width); and, for single-word images
// such as the glyphs model's 32 x 32 samples, recognition alone (detect=false).
func BenchmarkOCRReward(b *testing.B) {
	for _, tc := range []struct {
		name     string
		size     int
		noDetect bool
	}{{"512px", 512, false}, {"256px", 256, false}, {"32px-nodetect", 32, true}} {
		b.Run(tc.name, func(b *testing.B) {
			r := newOCR(b, tc.noDetect)
			imgs := textBatch(b, tc.size)
			dst := make([]float64, benchK)
			prompt := `a sign that says "Open Sesame"`
			if err := r.Score(context.Background(), imgs, prompt, dst); err != nil { // warm up
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := r.Score(context.Background(), imgs, prompt, dst); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/step")
		})
	}
}

// BenchmarkClassifierReward: the MNIST classifier on 16 generated-size (32 x 32) digits,
// centre-cropped to 28 as steering the MNIST DiT does.
func BenchmarkClassifierReward(b *testing.B) {
	modeltest.Runtime(b)
	path := testenv.SharedFile(b, "models/mnist-cnn-classifier/mnist-8.onnx")
	r, err := rewards.Parse("classifier:model="+path+",target=3,crop=28", rewards.Env{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	imgs := randomImages(1, benchK, 1, 32, 32)
	dst := make([]float64, benchK)
	if err := r.Score(context.Background(), imgs, "", dst); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Score(context.Background(), imgs, "", dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/step")
}
