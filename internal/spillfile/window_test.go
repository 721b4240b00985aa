package spillfile_test

import (
	"testing"

	"github.com/tailsift/tailsift/internal/spillfile"
)

// TestGetWhileDeleted: a Delete that empties a sealed file while a Get is
// between its lookup and its read leaves the file open for that read,
// which returns the value; the file goes when the read ends.
func TestGetWhileDeleted(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	v := value(1, 1<<20) // fills file 0: sealed
	mustWrite(t, s, [][]byte{key(1)}, [][]byte{v})
	removedEarly := false
	spillfile.SetTestHooks(s, func() {
		s.Delete(key(1))
		removedEarly = !exists(t, cfg.Dir, "00000000.spill")
	}, nil)
	wantValue(t, s, key(1), v)
	spillfile.SetTestHooks(s, nil, nil)
	if removedEarly {
		t.Fatal("the file was removed while a Get was reading it")
	}
	if exists(t, cfg.Dir, "00000000.spill") {
		t.Fatal("the emptied file stays after the read")
	}
	wantNotFound(t, s, key(1))
	checkDisk(t, s, cfg.Dir)
}

// TestCompactionWindow: a key deleted, and one overwritten, while the
// compactor is moving them are left as the Delete and the Write made them;
// only the untouched key is moved.
func TestCompactionWindow(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	const n = 100 // 16 KiB each: file 0 and part of file 1
	keys := make([][]byte, n)
	values := make([][]byte, n)
	for i := range n {
		keys[i], values[i] = key(i), value(uint64(i), 16<<10)
	}
	fileOf := writeOneByOne(t, s, keys, values)
	del, over, moved := 0, 1, 2 // of file 0
	for i := 3; fileOf[i] == 0; i++ {
		s.Delete(keys[i])
	}
	nv := value(1000, 5000)
	spillfile.SetTestHooks(s, nil, func() {
		s.Delete(keys[del])
		mustWrite(t, s, keys[over:over+1], [][]byte{nv})
	})
	spillfile.Compact(s)
	spillfile.SetTestHooks(s, nil, nil)

	if exists(t, cfg.Dir, "00000000.spill") {
		t.Fatal("file 0 stays after compaction")
	}
	wantNotFound(t, s, keys[del])
	wantValue(t, s, keys[over], nv)
	wantValue(t, s, keys[moved], values[moved])
	live := recordLen(keys[over], nv) + recordLen(keys[moved], values[moved])
	for i := range n {
		if fileOf[i] != 0 {
			wantValue(t, s, keys[i], values[i])
			live += recordLen(keys[i], values[i])
		}
	}
	st := s.Stats()
	if st.Compactions != 1 || st.CompactedBytes != recordLen(keys[moved], values[moved]) || st.LiveBytes != live {
		t.Fatalf("after compaction: %+v; want 1 compaction of %d bytes, %d live", st, recordLen(keys[moved], values[moved]), live)
	}
	checkDisk(t, s, cfg.Dir)
}
