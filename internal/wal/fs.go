package wal

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// FS is the file system the log writes through: the operating system's
// (OS), or in tests a double that records syncs and can lose what was not
// synced, as a power cut would (waltest.CrashFS). Names are paths.
// Methods are safe for concurrent use on distinct files.
type FS interface {
	// Create makes a new, empty file for appending; it fails if the file
	// exists. The directory entry is durable only after SyncDir.
	Create(name string) (File, error)
	// Open opens a file to read and, for a torn tail's repair, truncate.
	Open(name string) (File, error)
	Remove(name string) error
	// List returns the names (not paths) of the files in dir.
	List(dir string) ([]string, error)
	MkdirAll(dir string) error
	// SyncDir makes dir's entries (files created or removed) durable.
	SyncDir(dir string) error
}

// File is an open segment.
type File interface {
	io.Reader
	io.Writer
	// Sync makes the file's content written so far durable.
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
	Close() error
}

// OS is the operating system's file system.
type OS struct{}

func (OS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OS) Open(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OS) Remove(name string) error { return os.Remove(name) }

func (OS) List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func (OS) MkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// The new directory's own entry must survive a power cut too.
	return OS{}.SyncDir(filepath.Dir(dir))
}

func (OS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type osFile struct{ *os.File }

// Sync is fdatasync: an appended file's length is data, so it is synced
// too, and the inode's times, which nothing reads, are not.
func (f osFile) Sync() error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

func (f osFile) Size() (int64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}
