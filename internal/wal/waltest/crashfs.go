// Package waltest provides a file system for tests of the write-ahead
// log: it keeps files in memory, records what was synced, and can lose
// what was not, as a power cut would; it can also hang or fail like a bad
// disk.
package waltest

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"

	"github.com/tailsift/tailsift/internal/wal"
)

// CrashFS is an in-memory wal.FS. A file's bytes are durable up to its
// last Sync; a created file's (or a removal's) directory entry once its
// directory is synced. Crash returns what a power cut would leave.
type CrashFS struct {
	mu      sync.Mutex
	files   map[string]*file
	dirs    map[string]bool
	blocked chan struct{} // non-nil: Write and Sync wait for it to close
	failErr error         // non-nil: Write and Sync fail with it
	syncs   int
}

type file struct {
	data    []byte
	synced  int  // bytes durable
	entry   bool // the directory entry is durable
	removed bool // removed, but the removal is not yet durable
}

// New returns an empty file system.
func New() *CrashFS { return &CrashFS{files: map[string]*file{}, dirs: map[string]bool{}} }

func (c *CrashFS) Create(name string) (wal.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.files[name]; f != nil && !f.removed {
		return nil, fs.ErrExist
	}
	if c.failErr != nil {
		return nil, c.failErr
	}
	c.files[name] = &file{}
	return &handle{c: c, name: name}, nil
}

func (c *CrashFS) Open(name string) (wal.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.files[name]; f == nil || f.removed {
		return nil, fs.ErrNotExist
	}
	return &handle{c: c, name: name}, nil
}

func (c *CrashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.files[name]
	if f == nil || f.removed {
		return fs.ErrNotExist
	}
	if !f.entry {
		delete(c.files, name)
		return nil
	}
	f.removed = true
	return nil
}

func (c *CrashFS) List(dir string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for name, f := range c.files {
		if filepath.Dir(name) == filepath.Clean(dir) && !f.removed {
			names = append(names, filepath.Base(name))
		}
	}
	sort.Strings(names)
	return names, nil
}

func (c *CrashFS) MkdirAll(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dirs[filepath.Clean(dir)] = true
	return nil
}

func (c *CrashFS) SyncDir(dir string) error {
	if err := c.await(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, f := range c.files {
		if filepath.Dir(name) != filepath.Clean(dir) {
			continue
		}
		if f.removed {
			delete(c.files, name)
		} else {
			f.entry = true
		}
	}
	return nil
}

// await waits while the disk hangs, and returns the injected failure.
func (c *CrashFS) await() error {
	c.mu.Lock()
	ch, err := c.blocked, c.failErr
	c.mu.Unlock()
	if ch != nil {
		<-ch
		c.mu.Lock()
		err = c.failErr
		c.mu.Unlock()
	}
	return err
}

// Hang makes writes and syncs block until the returned function is called.
func (c *CrashFS) Hang() (resume func()) {
	ch := make(chan struct{})
	c.mu.Lock()
	c.blocked = ch
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.blocked = nil
			c.mu.Unlock()
			close(ch)
		})
	}
}

// Fail makes writes, syncs and creates fail with err (nil: stop failing).
func (c *CrashFS) Fail(err error) {
	c.mu.Lock()
	c.failErr = err
	c.mu.Unlock()
}

// Syncs returns the number of file syncs so far.
func (c *CrashFS) Syncs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.syncs
}

// Durable reports how many bytes of the file would survive a power cut
// now: 0 if its directory entry is not durable.
func (c *CrashFS) Durable(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.files[name]
	if f == nil || !f.entry {
		return 0
	}
	return f.synced
}

// Crash returns the file system a power cut would leave now: files whose
// entry was not synced are gone (removals not synced are undone), and
// each file keeps its synced bytes plus, if rng is not nil, a random part
// of the bytes written after, the last of them possibly garbled: a torn
// tail.
func (c *CrashFS) Crash(rng *rand.Rand) *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	after := New()
	for d := range c.dirs {
		after.dirs[d] = true
	}
	for name, f := range c.files {
		if !f.entry {
			continue
		}
		keep := f.synced
		if rng != nil && len(f.data) > f.synced {
			keep += rng.IntN(len(f.data) - f.synced + 1)
		}
		data := append([]byte(nil), f.data[:keep]...)
		if rng != nil && keep > f.synced && rng.IntN(2) == 0 {
			data[keep-1] ^= 0x5a
		}
		after.files[name] = &file{data: data, synced: len(data), entry: true}
	}
	return after
}

type handle struct {
	c    *CrashFS
	name string
	off  int // read position
}

func (h *handle) get() (*file, error) {
	f := h.c.files[h.name]
	if f == nil {
		return nil, fs.ErrNotExist
	}
	return f, nil
}

func (h *handle) Read(p []byte) (int, error) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	f, err := h.get()
	if err != nil {
		return 0, err
	}
	if h.off >= len(f.data) {
		return 0, io.EOF
	}
	n := copy(p, f.data[h.off:])
	h.off += n
	return n, nil
}

func (h *handle) Write(p []byte) (int, error) {
	if err := h.c.await(); err != nil {
		return 0, err
	}
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	f, err := h.get()
	if err != nil {
		return 0, err
	}
	f.data = append(f.data, p...)
	return len(p), nil
}

func (h *handle) Sync() error {
	if err := h.c.await(); err != nil {
		return err
	}
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	f, err := h.get()
	if err != nil {
		return err
	}
	f.synced = len(f.data)
	h.c.syncs++
	return nil
}

func (h *handle) Truncate(size int64) error {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	f, err := h.get()
	if err != nil {
		return err
	}
	if int(size) > len(f.data) {
		return errors.New("waltest: truncate past the end")
	}
	f.data = f.data[:size]
	f.synced = min(f.synced, int(size))
	return nil
}

func (h *handle) Size() (int64, error) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	f, err := h.get()
	if err != nil {
		return 0, err
	}
	return int64(len(f.data)), nil
}

func (h *handle) Close() error { return nil }
