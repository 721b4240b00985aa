// Package reloadfile holds a value loaded from files (certificates, keys,
// tokens) and loads it again when the files change, so that secrets rotate
// without a restart, as cert-manager and Kubernetes secrets rotate them: a
// new file, or a symlink swapped to one.
//
// The files are looked at on use (Get), at most once per interval; a
// change is loaded whole or not at all: files that do not load (half
// written, a key that does not match its certificate) leave the last good
// value in use, and are tried again at the next interval.
package reloadfile

import (
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often, at most, Get looks at the files.
const DefaultInterval = time.Second

// Value is a value loaded from files. Its methods are safe for concurrent
// use.
type Value[T any] struct {
	paths    []string
	load     func() (T, error)
	interval time.Duration
	now      func() time.Time
	onReload func(error)

	cur       atomic.Pointer[T]
	mu        sync.Mutex // one check at a time
	lastCheck time.Time
	stamps    []stamp

	reloads, failures atomic.Int64
}

// stamp identifies a file's version.
type stamp struct {
	mod  time.Time
	size int64
}

// Option adjusts a Value.
type Option func(*options)

type options struct {
	interval time.Duration
	now      func() time.Time
	onReload func(error)
}

// WithClock sets the clock (tests) and the check interval.
func WithClock(now func() time.Time, interval time.Duration) Option {
	return func(o *options) { o.now, o.interval = now, interval }
}

// OnReload is called after each attempt to load changed files: nil for a
// reload that took effect, else why the old value stays.
func OnReload(fn func(error)) Option { return func(o *options) { o.onReload = fn } }

// New loads the value from paths with load, which must read only those
// files (empty paths are skipped), and fails if it fails.
func New[T any](load func() (T, error), paths []string, opts ...Option) (*Value[T], error) {
	o := options{interval: DefaultInterval, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	v := &Value[T]{load: load, interval: o.interval, now: o.now, onReload: o.onReload}
	for _, p := range paths {
		if p != "" {
			v.paths = append(v.paths, p)
		}
	}
	stamps, x, err := v.read()
	if err != nil {
		return nil, err
	}
	v.cur.Store(&x)
	v.stamps, v.lastCheck = stamps, v.now()
	return v, nil
}

// read stamps the files, then loads them: a change during the load shows
// at the next check.
func (v *Value[T]) read() ([]stamp, T, error) {
	var zero T
	stamps := make([]stamp, len(v.paths))
	for i, p := range v.paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, zero, err
		}
		stamps[i] = stamp{st.ModTime(), st.Size()}
	}
	x, err := v.load()
	if err != nil {
		return nil, zero, err
	}
	return stamps, x, nil
}

// Get returns the value, loading it again first if the interval has
// passed since the last look and a file changed.
func (v *Value[T]) Get() T {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if now.Sub(v.lastCheck) < v.interval {
		return *v.cur.Load()
	}
	v.lastCheck = now
	if !v.changed() {
		return *v.cur.Load()
	}
	stamps, x, err := v.read()
	if err == nil {
		v.cur.Store(&x)
		v.stamps = stamps
		v.reloads.Add(1)
	} else {
		v.failures.Add(1)
	}
	if v.onReload != nil {
		v.onReload(err)
	}
	return *v.cur.Load()
}

// Current returns the value in use without looking at the files.
func (v *Value[T]) Current() T { return *v.cur.Load() }

func (v *Value[T]) changed() bool {
	for i, p := range v.paths {
		st, err := os.Stat(p)
		if err != nil || (stamp{st.ModTime(), st.Size()}) != v.stamps[i] {
			return true
		}
	}
	return false
}

// Stats counts reloads that took effect and that failed.
func (v *Value[T]) Stats() (reloads, failures int64) { return v.reloads.Load(), v.failures.Load() }
