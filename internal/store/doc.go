// Package store is the sampler's on-disk state: one embedded Badger
// database under --data-dir, used as a key-value store by the buffer (span
// bytes spilled past the memory limit, the write-ahead log of accepted
// spans) and the decision engine (recent decisions). The callers own the
// key layout; the store owns Badger: its memory budget, group commit,
// background deletion, value-log garbage collection, the disk limit and
// encryption at rest.
//
// Concurrency: every method is safe for concurrent use. Put calls that
// arrive while a commit is in progress are committed together in the next
// one, with one fsync for all that asked for durability (group commit).
// The committer also commits the queued deletes every DeleteInterval, and
// is the only writer. Close stops it and the maintenance loop and waits.
package store
