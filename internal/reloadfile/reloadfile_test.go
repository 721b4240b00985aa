package reloadfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/otlptest"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestReload: a changed file is loaded at the first Get after the
// interval, not before; one that does not load leaves the last good value
// and is tried again; reloads and failures are counted and reported.
func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	write(t, path, "first")
	clock := otlptest.NewFakeClock(time.Unix(1e9, 0))
	var reported []error
	load := func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", errors.New("empty")
	}
	v, err := New(load, []string{path, ""}, WithClock(clock.Now, time.Second), OnReload(func(err error) { reported = append(reported, err) }))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Get(); got != "first" {
		t.Fatalf("Get = %q", got)
	}
	write(t, path, "second!")
	if got := v.Get(); got != "first" {
		t.Errorf("within the interval: %q, want first", got)
	}
	clock.Add(time.Second)
	if got := v.Get(); got != "second!" {
		t.Errorf("after the interval: %q, want second!", got)
	}
	write(t, path, "")
	clock.Add(time.Second)
	if got := v.Get(); got != "second!" {
		t.Errorf("after a change that does not load: %q, want second! still", got)
	}
	write(t, path, "third")
	clock.Add(time.Second)
	if got, cur := v.Get(), v.Current(); got != "third" || cur != "third" {
		t.Errorf("after the fix: %q (current %q), want third", got, cur)
	}
	clock.Add(time.Second)
	v.Get() // unchanged: nothing reported
	if r, f := v.Stats(); r != 2 || f != 1 || len(reported) != 3 || reported[0] != nil || reported[1] == nil || reported[2] != nil {
		t.Errorf("reloads %d, failures %d, reported %v; want 2, 1, [nil error nil]", r, f, reported)
	}
	if _, err := New(load, []string{filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("New with a missing file succeeded")
	}
}
