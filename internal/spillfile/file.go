package spillfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// A record is the value's length (u32), the key's length (u16), the key,
// the value. The lengths let the compactor walk a file without the index.
const (
	recordHeader = 6
	maxKeyLen    = math.MaxUint16
	maxValueLen  = math.MaxUint32
)

// writeBufSize is the buffer records are gathered in before a write: a
// spill batch (4 MiB) takes four syscalls. directWrite: values at least
// this long are written from the caller's slice rather than copied.
const (
	writeBufSize = 1 << 20
	directWrite  = 256 << 10
)

const fileSuffix = ".spill"

// file is one spill file.
type file struct {
	id   uint32
	f    *os.File
	path string
	end  int64 // bytes written; the appender's (writeMu) while it is the head

	// Guarded by Store.mu.
	size      int64 // bytes written, as of the last append; final once sealed
	live      int64 // bytes of its records the index points at
	sealed    bool  // appends go elsewhere: removed once live is 0
	dropped   bool  // out of Store.files: closed and removed when refs is 0
	refs      int   // Get calls and the compactor reading it
	noCompact bool  // compacting it failed: not tried again
}

// newFile creates the next head file (writeMu held).
func (s *Store) newFile() (*file, error) {
	id := s.nextID
	s.nextID++
	path := filepath.Join(s.cfg.Dir, fmt.Sprintf("%08x%s", id, fileSuffix))
	fd, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	f := &file{id: id, f: fd, path: path}
	s.mu.Lock()
	s.files[id] = f
	s.mu.Unlock()
	return f, nil
}

// appendRecords writes a record of keys[i] and values[i] for each i to
// the head file, creating it if there is none, and sets s.locs[i] to where
// it put each. It updates no index: the caller does, once the bytes are
// written. It returns the file written to, nil if creating it failed.
// writeMu held.
func (s *Store) appendRecords(keys, values [][]byte) (*file, error) {
	f := s.head
	if f == nil {
		var err error
		if f, err = s.newFile(); err != nil {
			return nil, err
		}
		s.head = f
	}
	s.locs = s.locs[:0]
	buf := s.wbuf[:0]
	pos := f.end // where the next record goes
	var err error
	for i, v := range values {
		k := keys[i]
		n := recordHeader + len(k) + len(v)
		if len(buf) > 0 && len(buf)+n > cap(buf) {
			if err = s.writeAt(f, buf); err != nil {
				break
			}
			buf = buf[:0]
		}
		s.locs = append(s.locs, loc{off: pos, n: uint32(len(v)), file: f.id})
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(v)))
		buf = binary.LittleEndian.AppendUint16(buf, uint16(len(k)))
		buf = append(buf, k...)
		if len(v) >= directWrite {
			if err = s.writeAt(f, buf); err != nil {
				break
			}
			buf = buf[:0]
			if err = s.writeAt(f, v); err != nil {
				break
			}
		} else {
			// Fits: buf was flushed if it could not hold the record, and
			// a header, a key and a short value are under writeBufSize.
			buf = append(buf, v...)
		}
		pos += int64(n)
	}
	if err == nil && len(buf) > 0 {
		err = s.writeAt(f, buf)
	}
	s.wbuf = buf[:0]
	return f, err
}

// writeAt appends b to f with one pwrite (more if it is short). After a
// failure, appendFailed measures what it wrote.
func (s *Store) writeAt(f *file, b []byte) error {
	n, err := f.f.WriteAt(b, f.end)
	f.end += int64(n)
	s.own.Add(int64(n))
	return err
}

// sealIfFullLocked seals the head f once it has reached FileSize (mu and
// writeMu held).
func (s *Store) sealIfFullLocked(f *file, dead []*file) []*file {
	if f.size < s.cfg.FileSize {
		return dead
	}
	s.head = nil
	return s.sealLocked(f, dead)
}

// sealLocked takes f out of the appends; it is dropped at once if it holds
// nothing live (mu held, and writeMu if f is the head).
func (s *Store) sealLocked(f *file, dead []*file) []*file {
	f.sealed = true
	if f.live == 0 {
		dead = s.dropLocked(f, dead)
	}
	return dead
}

// unliveLocked accounts the record of n bytes at old as garbage, and drops
// its file if that was its last live record and it is sealed (mu held).
func (s *Store) unliveLocked(old loc, n int64, dead []*file) []*file {
	f := s.files[old.file]
	if f == nil {
		panic(fmt.Sprintf("BUG: spillfile: the index points into file %08x, which is not open", old.file))
	}
	f.live -= n
	s.live -= n
	if f.live < 0 {
		panic(fmt.Sprintf("BUG: spillfile: file %08x has %d live bytes", f.id, f.live))
	}
	if f.live == 0 && f.sealed {
		dead = s.dropLocked(f, dead)
	}
	return dead
}

// dropLocked takes f out of the file set. It is appended to dead, for the
// caller to close and remove once it releases mu, unless a reader holds
// it: the last one does that (mu held).
func (s *Store) dropLocked(f *file, dead []*file) []*file {
	delete(s.files, f.id)
	f.dropped = true
	if f.refs == 0 {
		dead = append(dead, f)
	}
	return dead
}

// unref releases a reference taken under mu, closing and removing f if it
// was the last on a dropped file.
func (s *Store) unref(f *file) {
	s.mu.Lock()
	f.refs--
	last := f.refs == 0 && f.dropped
	s.mu.Unlock()
	if last {
		s.removeFile(f)
	}
}

// removeFiles closes and removes dropped files, with mu released.
func (s *Store) removeFiles(dead []*file) error {
	var errs []error
	for _, f := range dead {
		if err := s.removeFile(f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Store) removeFile(f *file) error {
	err := errors.Join(f.f.Close(), os.Remove(f.path))
	s.own.Add(-f.size) // final: f was sealed or the store closed
	if err != nil {
		s.log.Warn("spillfile: removing a file", "file", f.path, "err", err)
		return fmt.Errorf("spillfile: removing %s: %w", f.path, err)
	}
	return nil
}

// clearDir removes the spill files an earlier run left: without the index,
// which lived in its memory, they are garbage. Other entries are left
// alone, so a Dir shared by mistake costs no one else's data.
func (s *Store) clearDir() error {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("spillfile: %w", err)
	}
	var errs []error
	removed, others := 0, 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), fileSuffix) {
			others++
			continue
		}
		if err := os.Remove(filepath.Join(s.cfg.Dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("spillfile: clearing an earlier run's files: %w", err))
			continue
		}
		removed++
	}
	if removed > 0 {
		s.log.Info("spillfile: removed the spill files of an earlier run", "dir", s.cfg.Dir, "files", removed)
	}
	if others > 0 {
		s.log.Warn("spillfile: the directory holds entries that are not spill files; they are left alone", "dir", s.cfg.Dir, "entries", others)
	}
	return errors.Join(errs...)
}
