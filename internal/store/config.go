package store

import (
	"errors"
	"fmt"
	"time"
)

// Config configures a Store.
type Config struct {
	// Dir holds the database. Flag --data-dir.
	Dir string
	// DiskLimit bounds the bytes the database takes on disk; past it Put
	// refuses new data with ErrDiskFull (deletes always go through).
	// Flag --disk-limit. Default 10 GiB.
	DiskLimit int64
	// EncryptionKey, if set (16, 24 or 32 bytes: AES-128/192/256), encrypts
	// everything written: tables, value log and write-ahead files.
	// Flag --data-key-file.
	EncryptionKey []byte
	// MemTableSize is Badger's in-memory write buffer; NumMemtables of them
	// may be held at once (one filling, the rest flushing). Together with
	// the caches below they bound Badger's own memory. Default 16 MiB x 2.
	MemTableSize int64
	NumMemtables int
	// IndexCacheSize bounds the table indexes and bloom filters held in
	// memory (without it Badger keeps every table's index). Default 16 MiB.
	IndexCacheSize int64
	// BlockCacheSize caches decrypted blocks; only used with encryption.
	// Default 8 MiB.
	BlockCacheSize int64
	// ValueThreshold: values at least this long go to the value log,
	// shorter ones stay in the LSM tree. Span bytes in the tree are
	// rewritten by every compaction (BenchmarkPut: 48 MB/s with 4 KiB
	// values in the tree, 330 MB/s in the value log), so all but tiny
	// values go to the log, reclaimed by value-log GC. Default 1 KiB.
	ValueThreshold int64
	// ValueLogFileSize is the size of one value-log file, the unit that
	// garbage collection reclaims; at most DiskLimit/8, since the file
	// being written is never collected. Default 64 MiB.
	ValueLogFileSize int64
	// GCInterval is how often value-log garbage collection runs (and more
	// often, every DiskCheckInterval, while the disk is over half full).
	// Default 30s.
	GCInterval time.Duration
	// DiskCheckInterval is how often the size on disk is measured. Default 1s.
	DiskCheckInterval time.Duration
	// DeleteInterval is how often queued deletes are committed. Default 100ms.
	DeleteInterval time.Duration
	// WriteTimeout is the longest Put waits for its commit; past it, it
	// returns ErrTimeout (the disk hangs). Flag --disk-timeout. Default 5s.
	WriteTimeout time.Duration
	// OtherBytes, if set, returns the bytes other files in Dir's
	// subdirectories take (the write-ahead log): they count against
	// DiskLimit too. The store's own files are Dir's top level.
	OtherBytes func() int64
}

// DefaultConfig returns the defaults documented on Config, with no Dir.
func DefaultConfig() Config {
	return Config{
		DiskLimit:         10 << 30,
		MemTableSize:      16 << 20,
		NumMemtables:      2,
		IndexCacheSize:    16 << 20,
		BlockCacheSize:    8 << 20,
		ValueThreshold:    1 << 10,
		ValueLogFileSize:  64 << 20,
		GCInterval:        30 * time.Second,
		DiskCheckInterval: time.Second,
		DeleteInterval:    100 * time.Millisecond,
		WriteTimeout:      5 * time.Second,
	}
}

// EnsureDefaults returns c with its zero fields set to their defaults, for
// Open; the caller's Config is not changed. No field of this Config has
// one: a zero size or interval is reported by Validate rather than quietly
// replaced, and no EncryptionKey means no encryption.
func (c Config) EnsureDefaults() Config { return c }

// Validate reports every problem of c.EnsureDefaults(), the configuration
// Open would run with.
func (c Config) Validate() error {
	c = c.EnsureDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("data_dir (--data-dir) is empty"))
	}
	if c.DiskLimit < 64<<20 {
		errs = append(errs, fmt.Errorf("disk_limit (--disk-limit) must be at least 64MiB, got %d bytes", c.DiskLimit))
	}
	switch len(c.EncryptionKey) {
	case 0, 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("data_key_file (--data-key-file): the key must be 16, 24 or 32 bytes, got %d", len(c.EncryptionKey)))
	}
	if c.MemTableSize < 1<<20 || c.NumMemtables < 1 {
		errs = append(errs, fmt.Errorf("store memtables must be at least 1 of 1MiB, got %d of %d bytes", c.NumMemtables, c.MemTableSize))
	}
	if c.IndexCacheSize <= 0 || c.BlockCacheSize <= 0 {
		errs = append(errs, errors.New("store index and block cache sizes must be positive"))
	}
	if c.ValueThreshold < 1 || c.ValueThreshold > 1<<20 {
		errs = append(errs, fmt.Errorf("store value threshold must be in [1, 1MiB], got %d", c.ValueThreshold))
	}
	if c.ValueLogFileSize < 1<<20 || c.ValueLogFileSize >= 2<<30 {
		errs = append(errs, fmt.Errorf("store value log file size must be in [1MiB, 2GiB), got %d", c.ValueLogFileSize))
	}
	if c.GCInterval <= 0 || c.DiskCheckInterval <= 0 || c.DeleteInterval <= 0 || c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("store intervals must be positive"))
	}
	return errors.Join(errs...)
}
