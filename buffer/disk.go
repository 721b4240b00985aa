package buffer

import (
	"encoding/binary"
	"errors"
	"time"
)

// Disk is where the buffer keeps span bytes past its memory budget and,
// with Config.WriteAhead, its write-ahead log. internal/store implements it
// over Badger. Methods are safe for concurrent use.
type Disk interface {
	// Write writes values[i] under keys[i] (ttl 0: no expiry) and returns
	// once they are committed, and with sync once they are on stable
	// storage. It returns an error with a RetryAfter method when the disk
	// budget is full. It does not retain the slices.
	Write(keys, values [][]byte, ttl time.Duration, sync bool) error
	// Get appends the value stored under key to dst.
	Get(key, dst []byte) ([]byte, error)
	// Scan calls fn for each key with the prefix, in key order; the slices
	// are valid during the call only.
	Scan(prefix []byte, fn func(key, value []byte) error) error
	// Delete removes the keys eventually (batched). It copies them.
	Delete(keys ...[]byte)
	// Full reports whether the disk budget is reached.
	Full() bool
}

// Key layout. Trace IDs lead so that one trace's keys are adjacent, and the
// counters are big-endian so that keys sort in write order.
const (
	spillPrefix    = 's' // s | trace ID | trace seq | part: span log bytes moved out of RAM
	walPrefix      = 'w' // w | trace ID | record seq: one Append's spans of one trace
	groupPrefix    = 'G' // G | group hash: its resource's hash and its scope part, for recovery
	resourcePrefix = 'r' // r | resource hash: a resource part, for recovery
	// legacyGroupPrefix: g | group hash: resource and scope parts in one
	// key, as versions before the two were interned apart wrote them.
	legacyGroupPrefix = 'g'
	spillKeyLen       = 1 + 16 + 8 + 4
	walKeyLen         = 1 + 16 + 8
	groupKeyLen       = 1 + 8
)

// SpillPrefix and WALPrefix are the key prefixes of spilled span bytes and
// of the write-ahead log, for the node to clear spilled bytes on start
// (they are not a recovery source) and for tests.
var (
	SpillPrefix = []byte{spillPrefix}
	WALPrefix   = []byte{walPrefix}
)

func spillKey(dst []byte, id *[16]byte, seq uint64, part uint32) []byte {
	dst = append(dst, spillPrefix)
	dst = append(dst, id[:]...)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return binary.BigEndian.AppendUint32(dst, part)
}

func walKey(dst []byte, id *[16]byte, rec uint64) []byte {
	dst = append(dst, walPrefix)
	dst = append(dst, id[:]...)
	return binary.BigEndian.AppendUint64(dst, rec)
}

func groupKey(dst []byte, hash uint64) []byte {
	dst = append(dst, groupPrefix)
	return binary.BigEndian.AppendUint64(dst, hash)
}

func resourceKey(dst []byte, hash uint64) []byte {
	dst = append(dst, resourcePrefix)
	return binary.BigEndian.AppendUint64(dst, hash)
}

func legacyGroupKey(dst []byte, hash uint64) []byte {
	dst = append(dst, legacyGroupPrefix)
	return binary.BigEndian.AppendUint64(dst, hash)
}

// ErrStorage wraps a failure of the disk other than a full budget. Spans
// affected are reported, never silently lost.
var ErrStorage = errors.New("buffer: storage")
