package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/store"
)

func TestValidate(t *testing.T) {
	valid := store.DefaultConfig()
	valid.Dir = "/var/lib/tailsift"
	if err := valid.Validate(); err != nil {
		t.Fatalf("defaults with a Dir: %v", err)
	}
	for _, n := range []int{16, 24, 32} {
		c := valid
		c.EncryptionKey = make([]byte, n)
		if err := c.Validate(); err != nil {
			t.Errorf("key of %d bytes: %v", n, err)
		}
	}
	c := valid
	c.DiskLimit = 64 << 20
	c.MemTableSize, c.NumMemtables = 1<<20, 1
	c.ValueThreshold = 64 << 10
	c.ValueLogFileSize = 1 << 20
	c.IndexCacheSize, c.BlockCacheSize = 1, 1
	c.GCInterval, c.DiskCheckInterval, c.DeleteInterval = 1, 1, 1
	if err := c.Validate(); err != nil {
		t.Errorf("lower bounds: %v", err)
	}
	c = valid
	c.ValueThreshold, c.ValueLogFileSize = 1<<20, 2<<30-1
	if err := c.Validate(); err != nil {
		t.Errorf("upper bounds: %v", err)
	}

	for _, tc := range []struct {
		name     string
		change   func(*store.Config)
		want     []string // each must be in the error
		problems int      // lines in the error: one per problem
	}{
		{
			name:     "no dir",
			change:   func(c *store.Config) { c.Dir = "" },
			want:     []string{"--data-dir"},
			problems: 1,
		},
		{
			name: "dir, limit, key, memtables",
			change: func(c *store.Config) {
				c.Dir = ""
				c.DiskLimit = 64<<20 - 1
				c.EncryptionKey = make([]byte, 31)
				c.NumMemtables = 0
			},
			want:     []string{"--data-dir", "--disk-limit", "at least 64MiB", "--data-key-file", "got 31", "memtables"},
			problems: 4,
		},
		{
			name: "caches, value threshold, value log, intervals",
			change: func(c *store.Config) {
				c.BlockCacheSize = 0
				c.ValueThreshold = 1<<20 + 1
				c.ValueLogFileSize = 2 << 30
				c.DeleteInterval = 0
			},
			want:     []string{"cache sizes", "value threshold", "value log file size", "intervals"},
			problems: 4,
		},
		{
			name: "the other side of each bound",
			change: func(c *store.Config) {
				c.MemTableSize = 1<<20 - 1
				c.IndexCacheSize = -1
				c.ValueThreshold = 0
				c.ValueLogFileSize = 1<<20 - 1
				c.GCInterval = -time.Second
			},
			want:     []string{"memtables", "cache sizes", "value threshold", "value log file size", "intervals"},
			problems: 5,
		},
		{
			name:     "disk check interval",
			change:   func(c *store.Config) { c.DiskCheckInterval = 0 },
			want:     []string{"intervals"},
			problems: 1,
		},
		{
			name:     "key of 8 bytes",
			change:   func(c *store.Config) { c.EncryptionKey = make([]byte, 8) },
			want:     []string{"--data-key-file", "16, 24 or 32", "got 8"},
			problems: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid
			tc.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			// Every problem, not just the first, one per line.
			if lines := strings.Count(err.Error(), "\n") + 1; lines != tc.problems {
				t.Errorf("%d lines, want %d:\n%v", lines, tc.problems, err)
			}
		})
	}
}

// TestOpenInvalid: Open validates first and touches nothing on disk.
func TestOpenInvalid(t *testing.T) {
	cfg := testConfig(t)
	cfg.Dir = filepath.Join(cfg.Dir, "db")
	cfg.DiskLimit = 1
	s, err := store.Open(cfg, nil)
	if err == nil {
		s.Close()
		t.Fatal("Open with DiskLimit 1: no error")
	}
	if !strings.Contains(err.Error(), "--disk-limit") {
		t.Errorf("Open: %v; want the Validate error", err)
	}
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Errorf("Open of an invalid config created %s (stat: %v)", cfg.Dir, err)
	}
}
