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

// Lock is a held lock. Release it with Unlock or Remove; process exit releases it too.
type Lock struct {
	f    *os.File
	path string
}

// testHookOpened runs between opening the lock file and locking it, so a test can interleave.
var testHookOpened = func() {}

// TryLock creates path if needed and takes an exclusive lock on it without waiting. When another
// process (or another Lock in this one) holds it, the error wraps [ErrLocked].
//
// A holder may [Lock.Remove] the file. Between this call's open and its lock the file at path can
// then be removed (and perhaps made anew by a third process), and a lock on the removed file
// would exclude nobody; so once locked, TryLock checks that path still names the file it locked,
// and starts again on the new file if not.
func TryLock(path string) (*Lock, error) {
	// Each retry means another process removed the file in the instant between our open and
	// our lock; a hundred in a row means something else is deleting it.
	for range 100 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		testHookOpened()
		if err := tryLock(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		held, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return &Lock{f: f, path: path}, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("lock %s: the file keeps being removed while it is locked", path)
}

// Unlock releases the lock and leaves the file in place. It is safe to call on a nil Lock and
// more than once.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the lock
	l.f = nil
	return err
}

// Remove deletes the lock file and releases the lock, leaving nothing behind. It deletes the
// file while still holding the lock, so a process that opened the old file meanwhile finds it
// gone once it gets the lock, and TryLock makes it start again on a new one. Safe to call on a
// nil Lock, more than once, and after Unlock (when it does nothing: the lock is no longer ours).
func (l *Lock) Remove() error {
	if l == nil || l.f == nil {
		return nil
	}
	rmErr := os.Remove(l.path)
	return errors.Join(rmErr, l.Unlock())
}
