package spillfile_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/spillfile"
)

// TestConfigValidate: every problem is reported at once, and the defaults
// fill only what is zero.
func TestConfigValidate(t *testing.T) {
	f := func(name string, cfg spillfile.Config, want ...string) {
		t.Helper()
		err := cfg.Validate()
		if len(want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			return
		}
		if err == nil {
			t.Errorf("%s: valid, want errors %q", name, want)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", name, err, w)
			}
		}
		if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
			t.Errorf("%s: %d errors, want %d: %q", name, n, len(want), err)
		}
	}
	ok := spillfile.Config{Dir: "/tmp/x", DiskLimit: 1 << 30}
	f("defaults", ok)
	f("zero", spillfile.Config{}, "no directory", "disk limit must be positive")
	f("everything wrong", spillfile.Config{FileSize: 100, DiskLimit: -1, CompactInterval: -time.Second},
		"no directory", "file size must be in [1MiB, 1GiB], got 100", "disk limit must be positive, got -1", "compaction interval must be positive")
	big := ok
	big.FileSize = 2 << 30
	f("file too big", big, "file size must be in [1MiB, 1GiB]")

	d := ok.EnsureDefaults()
	if d.FileSize != 64<<20 || d.CompactInterval != time.Second || ok.FileSize != 0 {
		t.Errorf("EnsureDefaults: %+v, from %+v", d, ok)
	}
	kept := spillfile.Config{FileSize: 2 << 20, CompactInterval: time.Minute}.EnsureDefaults()
	if kept.FileSize != 2<<20 || kept.CompactInterval != time.Minute {
		t.Errorf("EnsureDefaults replaced set fields: %+v", kept)
	}
}
