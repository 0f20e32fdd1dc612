// Package lockfile gives a process exclusive use of something on disk (a batch shard's output
// folder, a download in progress) through an advisory lock on a file. The operating system drops
// the lock when the process dies, however it dies, so a killed run never leaves a stale lock
// behind that a person must delete by hand.
package lockfile

import (
	"errors"
	"fmt"
	"os"
)

// ErrLocked is returned (wrapped) by [TryLock] when another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// Lock is a held lock. Release it with Unlock; process exit releases it too.
type Lock struct {
	f *os.File
}

// TryLock creates path if needed and takes an exclusive lock on it without waiting. When another
// process (or another Lock in this one) holds it, the error wraps [ErrLocked]. The file is left
// in place after Unlock: removing it would race with a process that has just opened it.
func TryLock(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := tryLock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock. It is safe to call on a nil Lock and more than once.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the lock
	l.f = nil
	return err
}
