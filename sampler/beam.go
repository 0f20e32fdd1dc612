package sampler

import (
	"context"
	"errors"
)

func runBeam(ctx context.Context, e *engine) error { return errors.New("beam: not written yet") }
