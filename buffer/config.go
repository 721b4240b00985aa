package buffer

import (
	"errors"
	"fmt"

	"github.com/tailsift/tailsift/internal/wal"
)

// Config configures a Buffer.
type Config struct {
	// MemoryLimit bounds the bytes held (span bytes plus bookkeeping).
	// Flag --memory-limit. Default 512 MiB.
	MemoryLimit int64
	// Shards is the number of lock stripes, a power of two. More stripes
	// mean less contention between ingest goroutines. Default 64.
	Shards int
	// Disk, if set, takes the span bytes of the oldest traces once the
	// buffer holds 62.5% of MemoryLimit, until it is back under 44%, so
	// that MemoryLimit is reached only when the disk cannot keep up or is
	// full. nil: no spilling, MemoryLimit bounds what is buffered.
	Disk Disk
	// Log, if set, is the write-ahead log: Append writes every span to it,
	// synced, before it returns (--durability=wal). The buffer releases
	// records as traces are forgotten and checkpoints old segments; the
	// caller opens and closes the log.
	Log *wal.Log
	// Legacy, if set, is where versions before the segment log kept
	// their write-ahead log; Recover reads it once (wal_legacy.go).
	Legacy Disk
	// Replay, if set and Log is not, is a log Recover reads: an earlier
	// run logged spans, this one does not (durability none now).
	Replay *wal.Log
	// MaxTraceSpans and MaxTraceBytes bound one trace: the request that
	// takes a trace to either makes it due at once (TakeReady returns it
	// with Limited set), so one runaway trace cannot hold the buffer, and
	// the decision tick, hostage. Later spans of it follow its decision.
	// Flags --max-trace-spans, --max-trace-bytes. Defaults (also for 0)
	// 100,000 spans and 64 MiB of span bytes.
	MaxTraceSpans int
	MaxTraceBytes int64
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{MemoryLimit: 512 << 20, Shards: 64, MaxTraceSpans: 100_000, MaxTraceBytes: 64 << 20}
}

// EnsureDefaults returns c with its zero fields set to their defaults, for
// New; the caller's Config is not changed. Only the trace limits have one:
// a zero MemoryLimit or Shards is reported by Validate, and a nil Disk
// means no spilling.
func (c Config) EnsureDefaults() Config {
	d := DefaultConfig()
	if c.MaxTraceSpans == 0 {
		c.MaxTraceSpans = d.MaxTraceSpans
	}
	if c.MaxTraceBytes == 0 {
		c.MaxTraceBytes = d.MaxTraceBytes
	}
	return c
}

// Validate reports every problem of c.EnsureDefaults(), the configuration
// New would run with.
func (c Config) Validate() error {
	c = c.EnsureDefaults()
	var errs []error
	if c.MemoryLimit <= 0 {
		errs = append(errs, fmt.Errorf("memory_limit (--memory-limit) must be positive, got %d", c.MemoryLimit))
	}
	if c.Shards <= 0 || c.Shards&(c.Shards-1) != 0 || c.Shards > 1<<16 {
		errs = append(errs, fmt.Errorf("buffer shards must be a power of two in [1, 65536], got %d", c.Shards))
	}
	if c.MaxTraceSpans < 0 {
		errs = append(errs, fmt.Errorf("max_trace_spans (--max-trace-spans) must be positive, got %d", c.MaxTraceSpans))
	}
	if c.MaxTraceBytes < 0 {
		errs = append(errs, fmt.Errorf("max_trace_bytes (--max-trace-bytes) must be positive, got %d", c.MaxTraceBytes))
	}
	return errors.Join(errs...)
}
