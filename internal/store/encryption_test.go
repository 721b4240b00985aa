package store_test

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/store"
)

const marker = "tailsift-plaintext-marker-0123456789"

// writeMarked puts the marker in keys and in values, small ones (LSM tree,
// memtable write-ahead file) and one past ValueThreshold (value log), with
// sync, and returns the entries.
func writeMarked(t *testing.T, s *store.Store, cfg store.Config) []store.Entry {
	t.Helper()
	var entries []store.Entry
	for i := range 20 {
		v := append(value(i, 200), marker...)
		entries = append(entries, store.Entry{Key: key("%s/%02d", marker, i), Value: v})
	}
	big := bytes.Repeat([]byte(marker), int(cfg.ValueThreshold)/len(marker)+10)
	entries = append(entries, store.Entry{Key: []byte("big"), Value: big})
	mustPut(t, s, true, entries...)
	return entries
}

// filesWithMarker walks dir and names the files that contain the marker.
func filesWithMarker(t *testing.T, dir string) (found []string, files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(marker)) {
			found = append(found, filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found, files
}

// TestEncryption: with a key, no file under Dir holds the marker in the
// clear, neither while open (write-ahead file, value log) nor after Close
// (tables); without one, the files do (the control, so the check can
// fail). The wrong key, or none, does not open the directory; the right
// one reads the data back.
func TestEncryption(t *testing.T) {
	encKey := []byte("0123456789abcdef0123456789abcdef") // 32 bytes: AES-256

	t.Run("control without key", func(t *testing.T) {
		cfg := testConfig(t)
		s := open(t, cfg)
		writeMarked(t, s, cfg)
		if found, n := filesWithMarker(t, cfg.Dir); len(found) == 0 {
			t.Fatalf("open store without a key: marker in none of %d files; the check cannot see plaintext", n)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if found, n := filesWithMarker(t, cfg.Dir); len(found) == 0 {
			t.Fatalf("closed store without a key: marker in none of %d files", n)
		}
	})

	cfg := testConfig(t)
	cfg.EncryptionKey = encKey
	s := open(t, cfg)
	entries := writeMarked(t, s, cfg)
	if found, n := filesWithMarker(t, cfg.Dir); len(found) > 0 {
		t.Fatalf("open encrypted store: plaintext marker in %q (of %d files)", found, n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	found, n := filesWithMarker(t, cfg.Dir)
	if len(found) > 0 {
		t.Fatalf("closed encrypted store: plaintext marker in %q (of %d files)", found, n)
	}
	t.Logf("marker in none of %d files", n)

	for _, bad := range []struct {
		name string
		key  []byte
	}{
		{"other key", []byte("fedcba9876543210fedcba9876543210")},
		{"shorter key", encKey[:16]},
		{"no key", nil},
	} {
		c := cfg
		c.EncryptionKey = bad.key
		s, err := store.Open(c, nil)
		if err == nil {
			s.Close()
			t.Fatalf("Open with %s: no error", bad.name)
		}
		if !strings.Contains(err.Error(), "--data-key-file") {
			t.Errorf("Open with %s: %v; want it to mention --data-key-file", bad.name, err)
		}
	}

	s = open(t, cfg)
	for _, e := range entries {
		wantValue(t, s, e.Key, e.Value)
	}
}

// TestBadgerLogsToSlog: Badger's own error lines go to the logger given
// to Open (here, the one Badger writes when the key does not match), not
// to stderr.
func TestBadgerLogsToSlog(t *testing.T) {
	cfg := testConfig(t)
	cfg.EncryptionKey = []byte("0123456789abcdef")
	s := open(t, cfg)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var out otlptest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.EncryptionKey = []byte("fedcba9876543210")
	if s, err := store.Open(cfg, log); err == nil {
		s.Close()
		t.Fatal("Open with the wrong key: no error")
	}
	got := out.String()
	if !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "component=badger") || !strings.Contains(got, "mismatch") {
		t.Fatalf("logger got %q; want Badger's error line about the key mismatch", got)
	}
}
