package store

import (
	"io/fs"
	"path/filepath"
	"syscall"
)

// measureDisk sums the blocks allocated to the database's files. Badger
// preallocates value-log and memtable files sparsely, so their length
// overstates what they take.
func (s *Store) measureDisk() {
	var total int64
	filepath.WalkDir(s.cfg.Dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
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
