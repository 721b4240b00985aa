package spillfile

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// compactFilesPerRound bounds a round's work: each file is read whole, and
// at most a quarter of it copied, so a round reads at most four FileSizes
// and writes at most one.
const compactFilesPerRound = 4

// compactBufSize is the compactor's read size; a record larger than it is
// read in a buffer of its own.
const compactBufSize = 1 << 20

func (s *Store) compactLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.compact()
		}
	}
}

// compact copies the live records of the sealed files under a quarter live
// to the head, emptiest first, so those files go; and gives back the
// memory of an index that has shrunk.
func (s *Store) compact() {
	s.mu.Lock()
	s.idx.shrink()
	cands := s.cands[:0]
	for _, f := range s.files {
		if f.sealed && !f.noCompact && f.live*4 < f.size {
			cands = append(cands, f)
		}
	}
	slices.SortFunc(cands, func(a, b *file) int {
		return cmp.Or(cmp.Compare(float64(a.live)/float64(a.size), float64(b.live)/float64(b.size)), cmp.Compare(a.id, b.id))
	})
	if len(cands) > compactFilesPerRound {
		cands = cands[:compactFilesPerRound]
	}
	for _, f := range cands {
		f.refs++ // kept open even if deletes empty it meanwhile
	}
	s.mu.Unlock()
	for i, f := range cands {
		done, err := s.compactFile(f)
		if err != nil {
			// A file that cannot be read will not be read better next
			// time; a failed append (no space) is retried next round.
			s.log.Error("spillfile: reading a file to compact it failed; it stays until its values are deleted", "file", f.path, "err", err)
			s.mu.Lock()
			f.noCompact = true
			s.mu.Unlock()
		} else if done {
			s.stats.compactions.Add(1)
		}
		s.unref(f)
		cands[i] = nil
	}
	s.cands = cands[:0]
}

// compactFile walks f's records in chunks and moves the live ones to the
// head. Once it returns true, nothing live is left in f, and the last
// reference dropped removes it. It returns false, nil if Close interrupts
// or an append fails (appendFailed logs it); an error if f cannot be read.
func (s *Store) compactFile(f *file) (bool, error) {
	if s.cbuf == nil {
		s.cbuf = make([]byte, compactBufSize)
	}
	buf := s.cbuf
	size := f.size // final: f is sealed
	for off := int64(0); off < size; {
		select {
		case <-s.closing:
			return false, nil
		default:
		}
		b := buf[:min(int64(len(buf)), size-off)]
		if _, err := f.f.ReadAt(b, off); err != nil {
			return false, fmt.Errorf("spillfile: reading %s at %d: %w", f.path, off, err)
		}
		p, need := s.parseRecords(f.id, b, off)
		if p == 0 {
			if need == 0 || off+int64(need) > size {
				break // the tail of a failed append: nothing there is indexed
			}
			buf = make([]byte, need) // one record larger than the buffer
			continue
		}
		if err := s.move(); err != nil {
			return false, nil
		}
		off += int64(p)
	}
	return true, nil
}

// parseRecords sets s.ckeys, s.cvals and s.colds to the complete records
// of b, read at off in file id, and returns the bytes they take. If that
// is 0, need is the size of the record b starts with (0 if b is shorter
// than a header).
func (s *Store) parseRecords(id uint32, b []byte, off int64) (p, need int) {
	s.ckeys, s.cvals, s.colds = s.ckeys[:0], s.cvals[:0], s.colds[:0]
	for len(b)-p >= recordHeader {
		vlen := binary.LittleEndian.Uint32(b[p:])
		klen := int(binary.LittleEndian.Uint16(b[p+4:]))
		n := recordHeader + klen + int(vlen)
		if n > len(b)-p {
			if p == 0 {
				need = n
			}
			break
		}
		k := b[p+recordHeader : p+recordHeader+klen]
		s.ckeys = append(s.ckeys, k)
		s.cvals = append(s.cvals, b[p+recordHeader+klen:p+n])
		s.colds = append(s.colds, loc{off: off + int64(p), n: vlen, file: id})
		p += n
	}
	return p, need
}

// move copies the parsed records the index still points at to the head,
// and points the index at the copies, unless a Write or Delete changed a
// key meanwhile (that copy is then garbage).
func (s *Store) move() error {
	keys, vals, olds := s.ckeys, s.cvals, s.colds
	j := 0
	s.mu.Lock()
	for i, k := range keys {
		if l, ok := s.idx.get(k); ok && l == olds[i] {
			keys[j], vals[j], olds[j] = k, vals[i], olds[i]
			j++
		}
	}
	s.mu.Unlock()
	if j == 0 {
		return nil
	}
	if s.testHookMove != nil {
		s.testHookMove()
	}
	s.writeMu.Lock()
	dead, err := s.moveLocked(keys[:j], vals[:j], olds[:j])
	s.writeMu.Unlock()
	s.removeFiles(dead)
	return err
}

func (s *Store) moveLocked(keys, vals [][]byte, olds []loc) ([]*file, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	// No Full check: compaction is how the disk is given back.
	f, err := s.appendRecords(keys, vals)
	if err != nil {
		return s.appendFailed(f, err)
	}
	s.appendSucceeded()
	var dead []*file
	var moved int64
	s.mu.Lock()
	f.size = f.end
	for i, k := range keys {
		l := s.locs[i]
		if !s.idx.replace(k, olds[i], l) {
			continue
		}
		n := recordLen(len(k), l.n)
		f.live += n
		s.live += n
		dead = s.unliveLocked(olds[i], n, dead)
		moved += n
	}
	dead = s.sealIfFullLocked(f, dead)
	s.mu.Unlock()
	s.stats.compactedBytes.Add(moved)
	return dead, nil
}
