package spillfile

import (
	"bytes"
	"strings"
)

// loc is where a value is: its record's offset in a file. 16 bytes and no
// pointer, so the garbage collector never scans the index's entries.
type loc struct {
	off  int64  // of the record
	n    uint32 // the value's length
	file uint32 // file id
}

// valueOff is the offset of the value of the record at l, under a key of
// keyLen bytes.
func (l loc) valueOff(keyLen int) int64 { return l.off + recordHeader + int64(keyLen) }

// recordLen is the size of a record of a keyLen-byte key and an n-byte value.
func recordLen(keyLen int, n uint32) int64 { return recordHeader + int64(keyLen) + int64(n) }

// shortKeyLen is the longest key held inline in the index. Spill keys are
// 29 bytes; longer ones go to a map keyed by string.
const shortKeyLen = 31

// shortKey is a key of up to shortKeyLen bytes, zero-padded, then its
// length (so "a" and "a\x00" differ). An array key makes insertion
// allocation-free and keeps the map free of pointers.
type shortKey [shortKeyLen + 1]byte

func toShort(k []byte) (s shortKey) {
	copy(s[:shortKeyLen], k)
	s[shortKeyLen] = byte(len(k))
	return s
}

// shrinkMin is the peak entry count below which the index is never
// rebuilt: a small map's memory is not worth a copy.
const shrinkMin = 1 << 16

// index maps keys to locations. Not safe for concurrent use (Store.mu).
type index struct {
	short map[shortKey]loc
	long  map[string]loc
	peak  int // the most entries since the maps were made
}

func newIndex() index {
	return index{short: make(map[shortKey]loc), long: make(map[string]loc)}
}

func (x *index) len() int { return len(x.short) + len(x.long) }

func (x *index) get(k []byte) (loc, bool) {
	if len(k) <= shortKeyLen {
		l, ok := x.short[toShort(k)]
		return l, ok
	}
	l, ok := x.long[string(k)]
	return l, ok
}

// set points k at l and returns where it pointed before.
func (x *index) set(k []byte, l loc) (old loc, had bool) {
	if len(k) <= shortKeyLen {
		s := toShort(k)
		old, had = x.short[s]
		x.short[s] = l
	} else {
		old, had = x.long[string(k)]
		x.long[string(k)] = l
	}
	if n := x.len(); n > x.peak {
		x.peak = n
	}
	return old, had
}

// replace points k at l if it points at old, and reports whether it did.
func (x *index) replace(k []byte, old, l loc) bool {
	if cur, ok := x.get(k); !ok || cur != old {
		return false
	}
	if len(k) <= shortKeyLen {
		x.short[toShort(k)] = l
	} else {
		x.long[string(k)] = l
	}
	return true
}

func (x *index) remove(k []byte) (loc, bool) {
	if len(k) <= shortKeyLen {
		s := toShort(k)
		l, ok := x.short[s]
		if ok {
			delete(x.short, s)
		}
		return l, ok
	}
	l, ok := x.long[string(k)]
	if ok {
		delete(x.long, string(k))
	}
	return l, ok
}

// appendKeys appends the keys with the prefix to dst, in no order.
func (x *index) appendKeys(dst []string, prefix []byte) []string {
	for s := range x.short {
		if k := s[:s[shortKeyLen]]; bytes.HasPrefix(k, prefix) {
			dst = append(dst, string(k))
		}
	}
	p := string(prefix)
	for k := range x.long {
		if strings.HasPrefix(k, p) {
			dst = append(dst, k)
		}
	}
	return dst
}

// shrink rebuilds the maps once they hold under a quarter of their peak:
// Go maps never give back the memory of deleted entries, and a burst of
// spilling would otherwise keep its index's size for the process's life.
// The copy is O(entries left).
func (x *index) shrink() {
	n := x.len()
	if x.peak < shrinkMin || n*4 >= x.peak {
		return
	}
	short := make(map[shortKey]loc, len(x.short))
	for k, l := range x.short {
		short[k] = l
	}
	long := make(map[string]loc, len(x.long))
	for k, l := range x.long {
		long[k] = l
	}
	x.short, x.long, x.peak = short, long, n
}
