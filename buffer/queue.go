package buffer

// queueEntry marks when a trace became eligible for a deadline. Entries of
// traces already taken (or of an earlier trace with the same ID) are stale
// and skipped: seq tells them apart.
type queueEntry struct {
	id  [16]byte
	at  int64 // unix nanoseconds
	seq uint64
}

// queue is a FIFO ring of entries pushed in non-decreasing order of at, so
// the due entries are always at the front.
type queue struct {
	ring       []queueEntry
	head, size int
}

func (q *queue) push(e queueEntry) {
	if q.size == len(q.ring) {
		q.resize(max(64, 2*len(q.ring)))
	}
	q.ring[(q.head+q.size)&(len(q.ring)-1)] = e
	q.size++
}

// front returns the oldest entry; ok is false when empty.
func (q *queue) front() (queueEntry, bool) {
	if q.size == 0 {
		return queueEntry{}, false
	}
	return q.ring[q.head], true
}

func (q *queue) pop() {
	q.head = (q.head + 1) & (len(q.ring) - 1)
	q.size--
	// Give memory back after a burst.
	if len(q.ring) > 1024 && q.size < len(q.ring)/8 {
		q.resize(len(q.ring) / 4)
	}
}

func (q *queue) resize(n int) {
	ring := make([]queueEntry, n) // n is a power of two
	for i := range q.size {
		ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
	}
	q.ring, q.head = ring, 0
}
