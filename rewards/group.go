package rewards

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// runAll calls fn(ctx, i) for every i in [0, n) concurrently and waits for all of them: the
// first error cancels the context the other calls see, and is the error returned. n == 1 runs
// inline, without a goroutine.
func runAll(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n == 1 {
		return fn(ctx, 0)
	}
	g, ctx := errgroup.WithContext(ctx)
	for i := range n {
		g.Go(func() error { return fn(ctx, i) })
	}
	return g.Wait()
}
