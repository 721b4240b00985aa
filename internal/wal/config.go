package wal

import (
	"errors"
	"fmt"
	"time"
)

// Config configures a Log.
type Config struct {
	// Dir holds the segment files (data_dir/wal).
	Dir string
	// SegmentSize is the size past which the log starts a new segment:
	// the unit of deletion. Default 64 MiB.
	SegmentSize int64
	// MaxBytes bounds the bytes of segments on disk plus those waiting to
	// be written; past it Write refuses with ErrFull until released
	// records let old segments go. Checkpoints may pass it by one
	// segment. Default 4 GiB.
	MaxBytes int64
	// MaxPending bounds the bytes written but not yet synced: when the
	// disk is slower than ingest, Write refuses (ErrFull) rather than
	// queue without bound. Default 64 MiB.
	MaxPending int64
	// SyncTimeout is the longest Write waits for its records to be
	// synced; past it, it returns ErrTimeout (the disk hangs). Default 5s.
	SyncTimeout time.Duration
	// FlushInterval is how often records that need no sync of their own
	// (releases) are written when nothing else is. Default 1s.
	FlushInterval time.Duration
	// EncryptionKey, if set (16, 24 or 32 bytes), seals every record's
	// payload with AES-GCM. Flag --data-key-file.
	EncryptionKey []byte
	// FS is the file system; nil means the operating system's.
	FS FS
	// OtherBytes, if set, returns bytes others keep on the same budget
	// (the spill store): the log is full when its bytes and theirs reach
	// MaxBytes. It must be cheap and must not call the log.
	OtherBytes func() int64
}

// DefaultConfig returns the defaults documented on Config, with no Dir.
func DefaultConfig() Config {
	return Config{SegmentSize: 64 << 20, MaxBytes: 4 << 30, MaxPending: 64 << 20, SyncTimeout: 5 * time.Second, FlushInterval: time.Second}
}

// EnsureDefaults returns c with its zero fields set to their defaults.
func (c Config) EnsureDefaults() Config {
	d := DefaultConfig()
	if c.SegmentSize == 0 {
		c.SegmentSize = d.SegmentSize
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.MaxPending == 0 {
		c.MaxPending = d.MaxPending
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = d.SyncTimeout
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.FS == nil {
		c.FS = OS{}
	}
	return c
}

// Validate reports every problem of c.EnsureDefaults().
func (c Config) Validate() error {
	c = c.EnsureDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("wal: no directory"))
	}
	if c.SegmentSize < 1<<20 || c.SegmentSize > 1<<30 {
		errs = append(errs, fmt.Errorf("wal: segment size must be in [1MiB, 1GiB], got %d", c.SegmentSize))
	}
	if c.MaxBytes < 2*c.SegmentSize {
		errs = append(errs, fmt.Errorf("wal: the log's disk budget must hold at least two segments (%d bytes), got %d", 2*c.SegmentSize, c.MaxBytes))
	}
	if c.MaxPending < 1<<20 {
		errs = append(errs, fmt.Errorf("wal: pending bound must be at least 1MiB, got %d", c.MaxPending))
	}
	if c.SyncTimeout < 0 || c.FlushInterval < 0 {
		errs = append(errs, errors.New("wal: intervals must be positive"))
	}
	switch len(c.EncryptionKey) {
	case 0, 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("wal: the encryption key must be 16, 24 or 32 bytes, got %d", len(c.EncryptionKey)))
	}
	return errors.Join(errs...)
}
