package buffer

// indexed is a list of distinct items with their positions: a linear
// search while it is short (most traces reference one to five groups),
// a map once it is long, so a trace sent under thousands of resources
// costs O(1) per lookup.
type indexed[T comparable] struct {
	list []T
	idx  map[T]int32 // nil until the list is longer than indexedScanMax
}

// indexedScanMax is the longest list searched one by one.
const indexedScanMax = 8

// indexedEntry approximates the memory of one map entry: key, value and
// the map's slack.
const indexedEntry = 32

// find returns the position of x, if listed.
func (l *indexed[T]) find(x T) (int, bool) {
	if l.idx != nil {
		i, ok := l.idx[x]
		return int(i), ok
	}
	for i, y := range l.list {
		if y == x {
			return i, true
		}
	}
	return 0, false
}

// add lists x, which must not be listed yet, and returns its position.
func (l *indexed[T]) add(x T) int {
	l.list = append(l.list, x)
	n := len(l.list)
	switch {
	case l.idx != nil:
		l.idx[x] = int32(n - 1)
	case n > indexedScanMax:
		l.idx = make(map[T]int32, 2*n)
		for i, y := range l.list {
			l.idx[y] = int32(i)
		}
	}
	return n - 1
}

// reset empties the list, keeping its capacity (and dropping the map,
// which would keep the size of the longest list ever).
func (l *indexed[T]) reset() {
	clear(l.list)
	l.list, l.idx = l.list[:0], nil
}

// memory approximates the bytes the index holds beyond the list.
func (l *indexed[T]) memory() int64 { return int64(len(l.idx)) * indexedEntry }
