package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/internal/lockfile"
)

// ConflictError reports that a job or a merge stopped before changing anything because it
// would have replaced what it must not: a file in the output folder that fksteer did not write,
// items finished with other settings, or the results of another job. The message names the
// file or item and the fix (another output folder, or for a job [Job.Overwrite]); running the
// same command again cannot help.
type ConflictError struct{ msg string }

// Error names the conflict and its fix.
func (e *ConflictError) Error() string { return e.msg }

func conflictf(format string, args ...any) error {
	return &ConflictError{msg: fmt.Sprintf(format, args...)}
}

// state is an output folder's hidden state folder, made ready for a job or a merge and locked.
type state struct {
	lock *lockfile.Lock
	// created lists the folders that did not exist before, parents first, and lockPath the
	// lock file when the state folder is among them.
	created  []string
	lockPath string
}

// openState creates dir's state folders where needed and takes the lock named lockName in it.
// busy is the message for a lock another process holds.
func openState(dir, lockName, busy string) (*state, error) {
	created, err := mkdirs(recordsDir(dir))
	if err != nil {
		return nil, fmt.Errorf("output folder %s cannot be created: %w", dir, err)
	}
	st := &state{created: created}
	path := filepath.Join(dir, State, lockName)
	if st.lock, err = lockfile.TryLock(path); err != nil {
		st.abandon()
		if errors.Is(err, lockfile.ErrLocked) {
			return nil, errors.New(busy)
		}
		return nil, err
	}
	if len(created) > 0 {
		st.lockPath = path
	}
	return st, nil
}

// release unlocks the state folder and keeps it.
func (s *state) release() { s.lock.Unlock() }

// abandon unlocks the state folder and, when this run created it, removes it again (with the
// folder itself, when that was created too and is empty), so a refused run or merge leaves an
// output folder as it found it. The lock file goes while it is still held, so that a process
// which opened it meanwhile finds it gone (lockfile.TryLock checks) rather than sharing a lock
// on a deleted file.
func (s *state) abandon() {
	if s.lockPath != "" {
		os.Remove(s.lockPath)
	}
	s.lock.Unlock()
	for i := len(s.created) - 1; i >= 0; i-- {
		os.Remove(s.created[i]) // only empty folders go; anything written since stays
	}
}

// mkdirs is os.MkdirAll that returns the folders it created, parents first.
func mkdirs(path string) ([]string, error) {
	var missing []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			break // let MkdirAll report it
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, err
	}
	for i, j := 0, len(missing)-1; i < j; i, j = i+1, j-1 {
		missing[i], missing[j] = missing[j], missing[i]
	}
	return missing, nil
}

// Writers of a summary file, as summaryWriter reports them.
const (
	writerNone  = ""      // no summary, or not one fksteer wrote
	writerMerge = "merge" // fksteer batch merge
)

// summaryWriter says who wrote the summary at path: writerMerge, "batch I/N" for the job of
// shard I/N, or writerNone when the file does not exist or is not a summary fksteer writes.
// exists reports whether there is a file at path at all.
func summaryWriter(path string) (writer string, exists bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		_, statErr := os.Stat(path)
		return writerNone, statErr == nil
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(data, &doc) != nil {
		return writerNone, true
	}
	if _, ok := doc["sources"]; ok {
		return writerMerge, true
	}
	var shard string
	if json.Unmarshal(doc["shard"], &shard) == nil && shard != "" && doc["items"] != nil {
		return "batch " + shard, true
	}
	return writerNone, true
}

// isOwnManifest reports whether the manifest at path is one a batch or merge wrote in dir:
// every row is a record whose item has a record file there. A run killed between writing its
// manifest and its summary leaves such a manifest without a summary.
func isOwnManifest(dir, path string) bool {
	recs, err := ReadManifest(path)
	if err != nil {
		return false
	}
	for _, r := range recs {
		if !ValidID(r.ID) {
			return false
		}
		if _, err := os.Stat(recordPath(dir, r.ID)); err != nil {
			return false
		}
	}
	return true
}

// An item's write intent lists the files it is about to write. It is written before them and
// removed once the item's record lists them, so that after a crash in between, the files an
// item left behind without a record are still known to be the job's own rather than a user's.
func intentPath(dir, id string) string { return filepath.Join(recordsDir(dir), id+intentSuffix) }

const intentSuffix = ".writing"

func writeIntent(dir, id string, names []string) error {
	data, err := json.Marshal(names)
	if err != nil {
		return err
	}
	return writeFile(intentPath(dir, id), data)
}

func readIntent(dir, id string) []string {
	data, err := os.ReadFile(intentPath(dir, id))
	if err != nil {
		return nil
	}
	var names []string
	if json.Unmarshal(data, &names) != nil {
		return nil
	}
	return names
}

// checkOwnFiles refuses, unless j.Overwrite, to run where a file the job would write is
// already there and the job did not write it: in an item's names (<id>.*) a file that neither
// the item's record nor its write intent lists, or a manifest or summary of the shard's names
// that a batch of this shard did not write. An item whose record exists but cannot be read
// keeps its names: the record says the job wrote there. Nothing is changed either way.
func (j *Job) checkOwnFiles(items []Item, recs map[string]*Record, unreadable map[string]bool) error {
	if j.Overwrite {
		return nil
	}
	fix := "move it away, use another --out, or pass --overwrite to replace it"
	sumPath := filepath.Join(j.Dir, SummaryFile(j.Shard))
	writer, sumExists := summaryWriter(sumPath)
	ownSummary := writer == "batch "+j.Shard.String()
	switch {
	case writer == writerMerge:
		return conflictf("%s holds the results of fksteer batch merge (%s, %s), which a batch would replace: use another --out, or pass --overwrite to replace them", j.Dir, ManifestName, SummaryName)
	case sumExists && !ownSummary:
		return conflictf("%s was not written by fksteer batch (shard %s): %s", sumPath, j.Shard, fix)
	}
	manPath := filepath.Join(j.Dir, ManifestFile(j.Shard))
	if _, err := os.Stat(manPath); err == nil && !ownSummary && !isOwnManifest(j.Dir, manPath) {
		return conflictf("%s was not written by fksteer batch (shard %s): %s", manPath, j.Shard, fix)
	}

	entries, err := os.ReadDir(j.Dir)
	if err != nil {
		return fmt.Errorf("read output folder: %w", err)
	}
	mine := make(map[string]bool, len(items))
	for _, it := range items {
		mine[it.ID] = true
	}
	intents := map[string][]string{}
	for _, e := range entries {
		name := e.Name()
		id, _, ok := strings.Cut(name, ".")
		if !ok || !mine[id] || unreadable[id] {
			continue
		}
		if r := recs[id]; r != nil && r.lists(name) {
			continue
		}
		names, read := intents[id]
		if !read {
			names = readIntent(j.Dir, id)
			intents[id] = names
		}
		if slices.Contains(names, name) {
			continue
		}
		return conflictf("%s is in the output folder, but no record of item %s says fksteer batch wrote it, and the item would replace it: %s", filepath.Join(j.Dir, name), id, fix)
	}
	return nil
}

// lists reports whether the record lists a file of that name.
func (r *Record) lists(name string) bool {
	for _, f := range r.Files {
		if f.Name == name {
			return true
		}
	}
	return false
}

// sameBytes reports whether the file at path holds exactly data.
func sameBytes(path string, data []byte) bool {
	old, err := os.ReadFile(path)
	return err == nil && bytes.Equal(old, data)
}
