package lograte

import (
	"sync"
	"testing"
	"time"
)

// Of many concurrent calls within one interval exactly one is allowed; the
// next allowed call after the interval reports all the others.
func TestLimiter(t *testing.T) {
	l := &Limiter{Every: time.Hour}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := l.Allow(); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if allowed != 1 {
		t.Fatalf("%d of 100 calls allowed in one interval, want 1", allowed)
	}
	l.next.Store(0) // the interval has passed
	if ok, suppressed := l.Allow(); !ok || suppressed != 99 {
		t.Fatalf("after the interval: allowed %v, suppressed %d; want true, 99", ok, suppressed)
	}
}
