package store

import (
	"io/fs"
	"path/filepath"
	"syscall"
)

// measureDisk sums the blocks allocated to the database's files, those
// at the top level of Dir (subdirectories belong to others: OtherBytes).
// Badger preallocates value-log and memtable files sparsely, so their
// length overstates what they take.
func (s *Store) measureDisk() {
	var total int64
	filepath.WalkDir(s.cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if path != s.cfg.Dir {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	s.diskBytes.Store(total)
}
