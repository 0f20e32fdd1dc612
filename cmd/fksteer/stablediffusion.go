package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/disintegration/imaging"

	"github.com/fksteer/fksteer/internal/filehash"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/pipelines"
	"github.com/fksteer/fksteer/pipelines/sd"
	"github.com/fksteer/fksteer/rewards"
	"github.com/fksteer/fksteer/sampler"
	"github.com/fksteer/fksteer/schedule"
)

// openSD opens a Stable Diffusion export folder with the options the configuration gives.
func (a *app) openSD(dir string, opts []models.Option) (pipelines.Pipeline, error) {
	// The user's values, refused as usage errors before the folder is read.
	if name := a.v.GetString("scheduler"); name != "" {
		if _, err := schedule.ParseSchedulerKind(name); err != nil {
			return nil, usageError{err}
		}
	}
	for _, key := range []string{"width", "height"} {
		if v := a.v.GetInt(key); v < 0 || v%8 != 0 {
			return nil, usageError{fmt.Errorf("--%s %d is not a multiple of 8 (the VAE's scale factor); 0 takes the model's size", key, v)}
		}
	}
	p, err := sd.Open(dir, sd.Options{
		Scheduler:       a.v.GetString("scheduler"),
		Width:           a.v.GetInt("width"),
		Height:          a.v.GetInt("height"),
		GuidanceRescale: a.v.GetFloat64("guidance-rescale"),
		PreviewDecoder:  a.v.GetString("preview-decoder"),
		Logger:          a.log,
	}, opts...)
	if err != nil {
		return nil, err // not p: a nil *sd.Pipeline would be a non-nil Pipeline
	}
	return p, nil
}

// checkNotSD refuses the Stable Diffusion keys for other models: setting one there is a
// mistake worth naming rather than ignoring. viper reports defaults as set, so a key counts as
// chosen when its value differs from the default.
func (a *app) checkNotSD(model string) error {
	for _, s := range samplingSettings {
		if s.sdOnly && fmt.Sprint(a.v.Get(s.key)) != fmt.Sprint(s.def) {
			return usageError{fmt.Errorf("--%s applies to Stable Diffusion export folders only, and model %s is not one", s.key, model)}
		}
	}
	return nil
}

// startImage is the image an image-to-image run starts from.
type startImage struct {
	path, hash string
	strength   float64
}

// readStart reads the init-image and strength keys; nil when no init image is set.
func readStart(v settings) (*startImage, error) {
	path := v.GetString("init-image")
	if path == "" {
		return nil, nil
	}
	s := &startImage{path: path, strength: v.GetFloat64("strength")}
	if s.strength <= 0 || s.strength > 1 {
		return nil, usageError{fmt.Errorf("strength %g must be in (0, 1]: the share of the steps that redraw the init image", s.strength)}
	}
	var err error
	if s.hash, _, err = filehash.SHA256(path); err != nil {
		return nil, usageError{fmt.Errorf("init image: %w", err)}
	}
	return s, nil
}

// applyStart encodes the start image with p's image encoder into cfg.Init, resized (Lanczos)
// to the model's image size as diffusers' image processor resizes it.
func applyStart(ctx context.Context, p pipelines.Pipeline, s *startImage, cfg *sampler.Config) error {
	if s == nil {
		return nil
	}
	enc, ok := p.(pipelines.ImageEncoder)
	if !ok {
		return usageError{fmt.Errorf("model %s cannot start from an image: --init-image needs a Stable Diffusion export (its VAE encoder)", p.Info().Name)}
	}
	info := p.Info()
	img, err := rewards.OpenImage(s.path)
	if err != nil {
		var big *rewards.TooManyPixelsError
		if errors.As(err, &big) {
			return fmt.Errorf("init image: %w", err)
		}
		return usageError{fmt.Errorf("init image %s: %w", s.path, err)}
	}
	imgs := rewards.FromImage(imaging.Resize(img, info.ImageWidth, info.ImageHeight, imaging.Lanczos))
	cfg.Init = make([]float32, info.Len())
	cfg.Strength = s.strength
	if err := enc.Encode(ctx, nil, imgs, cfg.Init); err != nil {
		return fmt.Errorf("init image %s: %w", s.path, err)
	}
	return nil
}

// applyNegative puts the negative prompt into cfg for pipelines that take one, and refuses it
// where guidance would silently ignore it.
func applyNegative(info pipelines.Info, negative string, cfg *sampler.Config) error {
	if info.Negative {
		cfg.CondOpts.Negative = negative
		return nil
	}
	if negative == "" || cfg.Guidance <= 1 {
		return nil
	}
	return usageError{fmt.Errorf("model %s takes no negative prompt (guidance %g would ignore it): remove the negative prompt or set --guidance 1", info.Name, cfg.Guidance)}
}
