package rewards_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/internal/testimages"
	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/rewards"
)

// writeSolid writes a w x h PNG of one colour to dir/name.
func writeSolid(t *testing.T, dir, name string, w, h int, c color.Color) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		img.Set(i%w, i/w, c)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// collect runs ScoreFiles and returns what it handed over, in order.
func collect(t *testing.T, r rewards.Reward, paths ...string) []rewards.FileScore {
	t.Helper()
	var got []rewards.FileScore
	err := rewards.ScoreFiles(context.Background(), r, "", paths, func(f rewards.FileScore) error {
		got = append(got, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestScoreFilesReportsBadFilesAndScoresTheRest: in a folder with a good image, a corrupt file
// and a pixel bomb (a 20000x20000 header in under 100 bytes), the good image is scored and the
// other two are reported, each once, by an error naming the file; the bomb is refused from its
// header as a *TooManyPixelsError, not decoded.
func TestScoreFilesReportsBadFilesAndScoresTheRest(t *testing.T) {
	dir := t.TempDir()
	good := writeSolid(t, dir, "good.png", 4, 4, color.White)
	corrupt := filepath.Join(dir, "corrupt.png")
	bomb := filepath.Join(dir, "bomb.png")
	for path, data := range map[string][]byte{corrupt: []byte("not an image\n"), bomb: testimages.PNGBomb(20000, 20000)} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, rewards.NewColor([3]float64{1, 1, 1}), corrupt, good, bomb)
	if len(got) != 3 {
		t.Fatalf("%d outcomes, want one per file: %+v", len(got), got)
	}
	// Unreadable files are handed over at once; the good one when its batch is scored.
	byPath := map[string]rewards.FileScore{}
	for _, f := range got {
		byPath[f.Path] = f
	}
	if f := byPath[good]; f.Err != nil || f.Score != 1 || len(f.Parts) != 1 || f.Parts[0].Name != "color" {
		t.Errorf("good image: %+v, want score 1 with one color part", f)
	}
	var big *rewards.TooManyPixelsError
	if f := byPath[bomb]; !errors.As(f.Err, &big) || strings.Count(f.Err.Error(), bomb) != 1 {
		t.Errorf("bomb: error %v, want a TooManyPixelsError naming the file once", f.Err)
	}
	if f := byPath[corrupt]; f.Err == nil || strings.Count(f.Err.Error(), corrupt) != 1 {
		t.Errorf("corrupt file: error %v, want one naming the file once", f.Err)
	}
}

// sizeRefuser fails on images of one width, as a classifier fails on images smaller than its
// crop, and scores the others with their mean.
type sizeRefuser struct{ width int }

func (sizeRefuser) Name() string { return "refuser" }
func (sizeRefuser) Close() error { return nil }
func (r sizeRefuser) Score(_ context.Context, imgs pixels.Images, _ string, dst []float64) error {
	if imgs.W == r.width {
		return fmt.Errorf("cannot score %d-wide images", imgs.W)
	}
	for i := range imgs.N {
		var sum float64
		for _, v := range imgs.At(i) {
			sum += float64(v)
		}
		dst[i] = sum / float64(len(imgs.At(i)))
	}
	return nil
}

// TestScoreFilesRewardErrorsPerSize: a reward that fails on the images of one size fails those
// only, each with the reward's name and the file's; the scored files come in argument order,
// across batches of FileBatchImages.
func TestScoreFilesRewardErrorsPerSize(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range rewards.FileBatchImages + 3 {
		w := 2
		if i%5 == 0 {
			w = 3
		}
		paths = append(paths, writeSolid(t, dir, fmt.Sprintf("%02d.png", i), w, 2, color.Gray{uint8(i)}))
	}
	got := collect(t, sizeRefuser{width: 3}, paths...)
	if len(got) != len(paths) {
		t.Fatalf("%d outcomes, want %d", len(got), len(paths))
	}
	for i, f := range got {
		if f.Path != paths[i] {
			t.Errorf("outcome %d is %s, want %s: the order of the arguments", i, f.Path, paths[i])
		}
		if i%5 == 0 {
			if f.Err == nil || !strings.HasPrefix(f.Err.Error(), paths[i]+": reward refuser: cannot score 3-wide") {
				t.Errorf("%s: error %v, want the file's and the reward's names", f.Path, f.Err)
			}
			continue
		}
		if want := float64(i) / 255; f.Err != nil || f.Score < want-1e-6 || f.Score > want+1e-6 {
			t.Errorf("%s: %+v, want score %g", f.Path, f, want)
		}
	}
}

// TestScoreFilesStops: an error from emit, and a cancelled context, stop ScoreFiles with that
// error.
func TestScoreFilesStops(t *testing.T) {
	dir := t.TempDir()
	paths := []string{writeSolid(t, dir, "a.png", 2, 2, color.White), writeSolid(t, dir, "b.png", 2, 2, color.White)}
	stop := errors.New("stdout closed")
	calls := 0
	err := rewards.ScoreFiles(context.Background(), rewards.NewColor([3]float64{}), "", paths, func(rewards.FileScore) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Errorf("emit failing: error %v after %d calls, want %v after 1", err, calls, stop)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = rewards.ScoreFiles(ctx, rewards.NewColor([3]float64{}), "", paths, func(rewards.FileScore) error {
		t.Error("a file was handed over after cancellation")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v, want context.Canceled", err)
	}
}
