package rewards

import (
	"context"
	"fmt"
	"strings"

	"github.com/fksteer/fksteer/pixels"
)

// ScoreFiles streams: it holds at most one batch of decoded images, so memory does not grow
// with the number of files, and the first scores arrive before the last file is read.
const (
	// FileBatchImages bounds the images scored together (one reward call per size).
	FileBatchImages = 16
	// FileBatchPixels bounds the pixels held at once (16 Mi pixels: 192 MiB as float32 RGB);
	// a single larger image is scored alone.
	FileBatchPixels = 16 << 20
)

// FileScore is what [ScoreFiles] made of one file: its score with the score's parts (as
// [Explain] reports them), or the error that kept it from being scored.
type FileScore struct {
	Path  string
	Score float64
	Parts []PartScore
	// Err is why the file was not scored, nil when it was: it could not be read or decoded,
	// it is larger than [MaxImagePixels] (a [*TooManyPixelsError]), or the reward failed on the
	// images of its size in its batch. Its message names the file, once.
	Err error
}

// ScoreFiles scores image files with r (read as [LoadImage] reads them) for prompt, and hands
// each file's outcome to emit: once per path, whatever happens to the file, so that one bad
// file costs only its own score. A file that cannot be read is handed over at once; the others
// when their batch has been scored (images of one size in one reward call, at most
// [FileBatchImages] images or [FileBatchPixels] pixels a batch), in the order of paths.
//
// ScoreFiles returns an error only when it stops: ctx is done (the files not yet handed over
// are dropped) or emit returned an error, which is returned as it is. The errors of single
// files are in their FileScore.
func ScoreFiles(ctx context.Context, r Reward, prompt string, paths []string, emit func(FileScore) error) error {
	b := fileBatch{r: r, prompt: prompt, emit: emit}
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		img, err := LoadImage(p)
		if err != nil {
			if err := emit(FileScore{Path: p, Err: namingFile(p, err)}); err != nil {
				return err
			}
			continue
		}
		b.paths = append(b.paths, p)
		b.imgs = append(b.imgs, img)
		b.pixels += img.H * img.W
		if len(b.imgs) >= FileBatchImages || b.pixels >= FileBatchPixels {
			if err := b.flush(ctx); err != nil {
				return err
			}
		}
	}
	return b.flush(ctx)
}

// fileBatch holds the loaded images that ScoreFiles has not handed over yet.
type fileBatch struct {
	r      Reward
	prompt string
	emit   func(FileScore) error

	paths  []string
	imgs   []pixels.Images
	pixels int
}

// flush scores the pending images, one reward call per size, and hands them over in order. A
// reward error fails the images of that call only; cancellation stops.
func (b *fileBatch) flush(ctx context.Context) error {
	if len(b.imgs) == 0 {
		return nil
	}
	out := make([]FileScore, len(b.imgs))
	for _, group := range sameSize(b.imgs) {
		scores, parts, err := Explain(ctx, b.r, stack(b.imgs, group), b.prompt)
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !strings.HasPrefix(err.Error(), "reward ") {
			err = NameError(b.r.Name(), err) // name the reward once: its own errors already do
		}
		for j, i := range group {
			out[i] = FileScore{Path: b.paths[i]}
			if err != nil {
				out[i].Err = namingFile(b.paths[i], err)
				continue
			}
			out[i].Score, out[i].Parts = scores[j], parts[j]
		}
	}
	clear(b.imgs) // drop the pixels before the next batch loads
	b.paths, b.imgs, b.pixels = b.paths[:0], b.imgs[:0], 0
	for _, o := range out {
		if err := b.emit(o); err != nil {
			return err
		}
	}
	return nil
}

// namingFile makes err name the file path, unless its message already does (the image
// loader's errors do; a reward's do not).
func namingFile(path string, err error) error {
	if strings.Contains(err.Error(), path) {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// sameSize groups the indices of images by channels and size, in order of first appearance,
// so each group is scored as one batch.
func sameSize(imgs []pixels.Images) [][]int {
	index := map[[3]int]int{}
	var groups [][]int
	for i, im := range imgs {
		key := [3]int{im.C, im.H, im.W}
		g, ok := index[key]
		if !ok {
			g = len(groups)
			index[key] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// stack copies the single images imgs[i] for i in group into one batch.
func stack(imgs []pixels.Images, group []int) pixels.Images {
	first := imgs[group[0]]
	b := pixels.NewImages(len(group), first.C, first.H, first.W)
	for j, i := range group {
		copy(b.At(j), imgs[i].Pix)
	}
	return b
}
