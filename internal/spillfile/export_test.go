package spillfile

// SetTestHooks sets functions called in Get between the index lookup and
// the read of the file, and in compaction between choosing the records to
// move and moving them, so that tests can change the store in those
// windows. Set them before the store is used concurrently.
func SetTestHooks(s *Store, read, move func()) { s.testHookRead, s.testHookMove = read, move }

// Compact runs a compaction round now. Only for a store whose
// CompactInterval does not fire during the test: rounds must not overlap.
func Compact(s *Store) { s.compact() }
