package lockfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSecondLockFailsUntilUnlocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: got %v, want ErrLocked", err)
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	b, err := TryLock(path)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	b.Unlock()
	b.Unlock() // a second Unlock is harmless
}

// TestRemoveWhileAnotherWaits covers the race that makes removing a lock file unsafe in
// general: B opens the file, A removes it and unlocks, B locks the removed file. B must notice
// and lock the file that is now at the path, so that a third process is still excluded.
func TestRemoveWhileAnotherWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	hooked := false
	testHookOpened = func() {
		if !hooked {
			hooked = true
			if err := a.Remove(); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { testHookOpened = func() {} })
	b, err := TryLock(path)
	if err != nil {
		t.Fatalf("lock after the holder removed the file: %v", err)
	}
	defer b.Unlock()
	if !hooked {
		t.Fatal("the hook did not run")
	}
	if _, err := TryLock(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("third lock: got %v, want ErrLocked (the second holds a lock on a removed file)", err)
	}
}

func TestRemoveDeletesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file still there after Remove: %v", err)
	}
	if err := a.Remove(); err != nil || a.Unlock() != nil {
		t.Error("a second Remove or Unlock after Remove is not harmless")
	}
	b, err := TryLock(path)
	if err != nil {
		t.Fatalf("lock after Remove: %v", err)
	}
	b.Unlock()
}
