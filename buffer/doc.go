// Package buffer holds traces in flight: for each trace a small summary and
// the raw bytes of its spans, until the decision engine takes it.
//
// Layout: traces are sharded by xxhash of the trace ID over a power-of-two
// number of stripes, each with its own mutex, map and two arrival-ordered
// queues (by first span, by root span) so that finding due traces costs
// O(due), not O(buffered). A queue is a FIFO ring, plus a small heap for the
// entries that arrive out of order (traces handed off by another node keep
// their original arrival times). A trace's spans live in one append-only
// byte log (framing + raw span); the resource/scope "group key" of each span
// is interned once per buffer and referenced by index, never copied per span.
//
// Memory is accounted in bytes (logs, summaries, queue entries, interned
// groups) against Config.MemoryLimit; Append refuses a whole request with
// ErrFull rather than take part of it.
//
// With a Disk (spill.go): past 62.5% of the limit a spill loop moves the
// oldest traces' span bytes to disk, keeping their summaries; Load reads
// them back once a trace is taken.
//
// With a Log (wal.go, checkpoint.go; package internal/wal): Append writes
// each trace's spans of the batch as one record and returns only once the
// log has synced it (the durability contract: every segment file holding
// the record fsynced past it, its directory entry fsynced after its
// creation), before it changes RAM; so every span of an Append that
// returned nil survives a crash or a power cut. A trace's records are
// released when the caller Forgets it; Recover reads the log back after a
// restart; a checkpoint loop copies the live records of old segments
// forward so the log can delete them.
//
// The buffer is format-agnostic: it stores opaque bytes and decides nothing.
// All methods are safe for concurrent use. A *Trace returned by TakeReady,
// TakeIf or TakeAll belongs to the caller; its bytes are immutable.
package buffer
