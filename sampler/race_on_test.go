//go:build race

package sampler_test

// raceEnabled tells the large statistical tests to leave the race-detector pass: their Go loops
// run ~10x slower under it, and the same code paths are raced by the smaller tests of this
// package. `make test` runs them again without -race.
const raceEnabled = true
