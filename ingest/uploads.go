package ingest

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// minUploadRate is the slowest a request may arrive while others wait for
// its room in the budget.
const minUploadRate = 1 << 20 // bytes per second

// upload is a request whose body is arriving, on the uploads list.
type upload struct {
	prev, next *upload // nil when not on the list
	admitted   time.Time
	held       atomic.Int64 // bytes it holds; set by its request's goroutine
	proto      string
	conn       *limitConn                // demoted if the upload is stopped as stalled; may be nil
	stopper    interface{ stopUpload() } // ends the upload; called with the list locked, must not block
}

// uploads lists the requests whose body is arriving, oldest first, so
// that clients that stall mid-upload cannot hold the budget others need.
// A gRPC stream holds max_request_size from its first frame, whatever it
// has received; an HTTP request holds what it has received, and a client
// that sends some and stops holds that until request_timeout.
//
// When a request finds the budget full, the oldest upload slower than
// minUploadRate (it holds more than it received in the time it has taken
// at that rate, after a second's grace) is stopped: a gRPC stream is
// cancelled, an HTTP request's reads fail; its client is told to retry,
// and the next comer finds room. A gRPC stream admitted also stops the
// oldest upload if it has taken longer than request_timeout (HTTP has
// net/http's ReadTimeout). Both happen only when requests come, which is
// when the room is needed: no timer per request, no goroutine.
type uploads struct {
	mu      sync.Mutex
	root    upload // root.next is the oldest
	timeout time.Duration
	stalled *prometheus.CounterVec // refused{protocol, reason="stalled"}
}

func (u *uploads) init(timeout time.Duration, refused *prometheus.CounterVec) {
	u.root.next, u.root.prev = &u.root, &u.root
	u.timeout, u.stalled = timeout, refused
}

// push lists up, which holds n bytes, as arriving on conn since now.
func (u *uploads) push(up *upload, proto string, conn *limitConn, n int64, now time.Time, s interface{ stopUpload() }) {
	up.admitted, up.proto, up.conn, up.stopper = now, proto, conn, s
	up.held.Store(n)
	u.mu.Lock()
	up.prev, up.next = u.root.prev, &u.root
	up.prev.next, u.root.prev = up, up
	u.mu.Unlock()
}

// remove takes up off the list; false if it was not on it (stopped, or
// removed already): then it has been or is being stopped.
func (u *uploads) remove(up *upload) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.unlinkLocked(up)
}

func (u *uploads) unlinkLocked(up *upload) bool {
	if up.next == nil {
		return false
	}
	up.prev.next, up.next.prev = up.next, up.prev
	up.prev, up.next = nil, nil
	return true
}

// stopStalled stops the oldest upload slower than minUploadRate, if any:
// called by a request that found the budget full.
func (u *uploads) stopStalled(now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for up := u.root.next; up != &u.root; up = up.next {
		age := now.Sub(up.admitted)
		if age > time.Second && age > time.Duration(up.held.Load())*(time.Second/minUploadRate) {
			u.unlinkLocked(up)
			up.stopper.stopUpload()
			up.conn.demote()
			u.stalled.WithLabelValues(up.proto, reasonStalled).Inc()
			return
		}
	}
}

// need is h.need, and when the room is held by others, makes room for the
// next comer if an upload has stalled.
func (r *Receiver) need(h *hold, n int64) error {
	err := h.need(n)
	if err == errInflightFull {
		r.uploads.stopStalled(time.Now())
	}
	return err
}

// stopExpired stops the oldest upload if it has taken longer than the
// request timeout.
func (u *uploads) stopExpired(now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if up := u.root.next; up != &u.root && now.Sub(up.admitted) > u.timeout {
		u.unlinkLocked(up)
		up.stopper.stopUpload()
	}
}
