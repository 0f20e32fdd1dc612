//go:build unix

package lockfile

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes a non-blocking flock. flock locks belong to the open file description, so two
// opens of the same file in one process exclude each other too, which keeps tests honest.
func tryLock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrLocked
	}
	return err
}
