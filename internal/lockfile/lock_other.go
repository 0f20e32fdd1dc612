//go:build !unix

package lockfile

import "os"

// tryLock does nothing where flock is unavailable: fksteer supports Linux (and other Unix
// systems); elsewhere two runs on one folder are not prevented.
func tryLock(*os.File) error { return nil }
