package spillfile

import (
	"errors"
	"fmt"
	"time"
)

// Config configures a Store.
type Config struct {
	// Dir holds the spill files (data_dir/spill). Open removes the spill
	// files in it; Dir should be the store's alone.
	Dir string
	// FileSize is the size past which the head file is sealed and a new
	// one started: the unit that deletion and compaction reclaim. Smaller
	// files free disk sooner and compact cheaper; each open file costs a
	// descriptor. Default 64 MiB.
	FileSize int64
	// DiskLimit bounds the bytes of the files, together with OtherBytes:
	// once reached, Write refuses with ErrFull until deletes free files.
	// One Write, and the compactor's copies, may pass it. Required.
	DiskLimit int64
	// OtherBytes, if set, returns the bytes others keep on the same budget
	// (the write-ahead log, the store). It must be cheap and must not call
	// the Store.
	OtherBytes func() int64
	// CompactInterval is how often sealed files that are mostly garbage
	// are looked for and compacted. Default 1s.
	CompactInterval time.Duration
}

// DefaultConfig returns the defaults documented on Config, with no Dir and
// no DiskLimit.
func DefaultConfig() Config {
	return Config{FileSize: 64 << 20, CompactInterval: time.Second}
}

// EnsureDefaults returns c with its zero fields set to their defaults; the
// caller's Config is not changed.
func (c Config) EnsureDefaults() Config {
	d := DefaultConfig()
	if c.FileSize == 0 {
		c.FileSize = d.FileSize
	}
	if c.CompactInterval == 0 {
		c.CompactInterval = d.CompactInterval
	}
	return c
}

// Validate reports every problem of c.EnsureDefaults(), the configuration
// Open would run with.
func (c Config) Validate() error {
	c = c.EnsureDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("spillfile: no directory (Dir)"))
	}
	if c.FileSize < 1<<20 || c.FileSize > 1<<30 {
		errs = append(errs, fmt.Errorf("spillfile: file size must be in [1MiB, 1GiB], got %d", c.FileSize))
	}
	if c.DiskLimit <= 0 {
		errs = append(errs, fmt.Errorf("spillfile: the disk limit must be positive, got %d", c.DiskLimit))
	}
	if c.CompactInterval < 0 {
		errs = append(errs, fmt.Errorf("spillfile: the compaction interval must be positive, got %v", c.CompactInterval))
	}
	return errors.Join(errs...)
}
