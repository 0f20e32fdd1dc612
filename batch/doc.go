// Package batch runs many generation items as one dependable job: it reads items from a text
// file (one prompt per line) or JSONL (prompt, seed, negative prompt, per-item overrides,
// reference images), gives every item a deterministic seed, splits the items into shards for
// schedulers such as Kubernetes Indexed Jobs and Slurm arrays, runs them on a bounded worker
// pool, and writes every output atomically together with a per-item record, a results manifest
// (JSONL) and a summary.
//
// A job is resumable and crash-safe. An item counts as finished only when its record exists and
// every file the record lists is present with the size and sha256 it names; the record is
// written last, so a process killed at any moment loses at most the items it was working on.
// Running the same job again skips finished items and redoes missing or corrupt ones.
//
// A job writes only what is its own: its items' files (<id>.*), their records and its shard's
// manifest and summary. Before any work it refuses, with a [ConflictError], to replace a file
// that its records do not say it wrote, or items finished with other settings; [Merge] never
// replaces or drops a finished output, and checks everything before it writes.
//
// batch knows nothing about models or sampling: the caller turns each item into a [Task] whose
// Render function produces the item's files. Given the same items and tasks, the files, the
// records and the manifest are byte-identical whatever the worker count or sharding, and
// [Merge] joins shards' results into what one unsharded run would have written.
package batch
