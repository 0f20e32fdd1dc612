//go:build race

package main

// raceEnabled moves the suites that run the CLI as hundreds of child processes (the bad-input
// and signal suites) out of the race-detector pass: the children are this race-instrumented
// binary, several times slower, and the race detector sees nothing across processes. `make test`
// runs them again without -race.
const raceEnabled = true
