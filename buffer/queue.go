package buffer

// queueEntry marks when a trace became eligible for a deadline. Entries of
// traces already taken (or of an earlier trace with the same ID) are stale
// and skipped: seq tells them apart.
type queueEntry struct {
	id  [16]byte
	at  int64 // unix nanoseconds
	seq uint64
}

// queue orders entries by at. Almost every push is in order (arrival time
// is now), so those go to a FIFO ring at O(1); an entry earlier than the
// ring's back (a handed-off trace's arrival time, or a concurrent request
// that read the clock first) goes to a min-heap instead, so it is not stuck
// behind later entries. The front is the earlier of the two.
type queue struct {
	ring       []queueEntry
	head, size int
	late       []queueEntry // min-heap by at
}

func (q *queue) push(e queueEntry) {
	if q.size > 0 && e.at < q.ring[(q.head+q.size-1)&(len(q.ring)-1)].at {
		q.pushLate(e)
		return
	}
	if q.size == len(q.ring) {
		q.resize(max(64, 2*len(q.ring)))
	}
	q.ring[(q.head+q.size)&(len(q.ring)-1)] = e
	q.size++
}

// front returns the earliest entry; ok is false when empty.
func (q *queue) front() (queueEntry, bool) {
	if q.lateFirst() {
		return q.late[0], true
	}
	if q.size == 0 {
		return queueEntry{}, false
	}
	return q.ring[q.head], true
}

// pop removes the entry front returned.
func (q *queue) pop() {
	if q.lateFirst() {
		q.popLate()
		return
	}
	q.head = (q.head + 1) & (len(q.ring) - 1)
	q.size--
	// Give memory back after a burst.
	if len(q.ring) > 1024 && q.size < len(q.ring)/8 {
		q.resize(len(q.ring) / 4)
	}
}

// lateFirst reports whether the earliest entry is the heap's.
func (q *queue) lateFirst() bool {
	return len(q.late) > 0 && (q.size == 0 || q.late[0].at < q.ring[q.head].at)
}

func (q *queue) resize(n int) {
	ring := make([]queueEntry, n) // n is a power of two
	for i := range q.size {
		ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
	}
	q.ring, q.head = ring, 0
}

// pushLate and popLate are a binary heap written out: container/heap would
// box every entry in an interface, an allocation per push.
func (q *queue) pushLate(e queueEntry) {
	h := append(q.late, e)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].at <= h[i].at {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	q.late = h
}

func (q *queue) popLate() {
	h := q.late
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h[c+1].at < h[c].at {
			c++
		}
		if h[i].at <= h[c].at {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	// Give memory back after a burst, as the ring does.
	if cap(h) > 1024 && n < cap(h)/8 {
		h = append(make([]queueEntry, 0, cap(h)/4), h...)
	}
	q.late = h
}
