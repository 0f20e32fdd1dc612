package sampler

import (
	"context"
	"errors"
)

func runNoise(ctx context.Context, e *engine) error { return errors.New("noise: not written yet") }
