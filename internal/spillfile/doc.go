// Package spillfile keeps the span bytes the buffer spills past its memory
// limit: append-only plain files under one directory, read back with pread
// (never mmap, so what is on disk never shows in the process's RSS), and an
// index in memory from key to where the value is. It implements buffer.Disk.
//
// Spilled bytes are written once, read back once when their trace is
// decided, then deleted. They are not a recovery source: the index lives
// only in memory, so Open removes the files an earlier run left, Close
// removes its own, and nothing is ever synced.
//
// Layout: files %08x.spill of records (value length u32, key length u16,
// key, value), little-endian, no file header. Writes append to the head
// file; past Config.FileSize it is sealed and the next Write starts a new
// one. A sealed file is removed as soon as none of its records is indexed;
// one whose live records are under a quarter of its size is compacted:
// those records are copied to the head file and the old file removed, so a
// few long-lived values cannot pin whole files.
//
// Invariants: every index entry points at a complete record of an open
// file; a file's live count is the size of the records the index points
// at in it; a file is closed only when it is out of the file set and no
// reader holds it.
//
// Concurrency: every method is safe for concurrent use. Appends (Write and
// the compactor's moves) are serialised by one mutex, held across the write
// syscalls; the index and the files' accounting sit under another, held for
// map operations only, never across I/O, so a slow read or write never
// blocks a Get or a Delete. Get holds a reference on the file it reads, so
// a concurrent Delete that empties the file leaves it open until the read
// ends. One goroutine compacts every CompactInterval; Close stops it.
package spillfile
