package spillfile_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tailsift/tailsift/internal/spillfile"
)

// TestSealed: values round-trip, and no file holds one in the clear.
func TestSealed(t *testing.T) {
	cfg := spillfile.DefaultConfig()
	cfg.Dir, cfg.DiskLimit = t.TempDir(), 1<<30
	st, err := spillfile.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := spillfile.NewSealed(st, bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("a span attribute nobody may read on disk")
	keys := [][]byte{[]byte("k1"), []byte("k2")}
	if err := s.Write(keys, [][]byte{secret, bytes.Repeat(secret, 100)}, 0, false); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.Dir, "*"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if bytes.Contains(data, secret) {
			t.Fatalf("%s holds a value in the clear", f)
		}
	}
	for i, want := range [][]byte{secret, bytes.Repeat(secret, 100)} {
		got, err := s.Get(keys[i], nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("value %d read back as %q (%v)", i, got, err)
		}
	}
}
