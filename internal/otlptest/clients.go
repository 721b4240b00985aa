package otlptest

import (
	"net"
	"sync"
	"time"
)

// StallingConn passes writes through until Left bytes were written, then
// blocks them until it is closed: a client that sent part of its requests
// and stalls, or (closed) leaves mid-upload.
type StallingConn struct {
	net.Conn
	mu      sync.Mutex
	left    int
	closed  chan struct{}
	stalled chan struct{}
	once    sync.Once
	stall   sync.Once
}

// NewStallingConn wraps c to stall after left bytes.
func NewStallingConn(c net.Conn, left int) *StallingConn {
	return &StallingConn{Conn: c, left: left, closed: make(chan struct{}), stalled: make(chan struct{})}
}

func (c *StallingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if len(p) <= c.left {
		c.left -= len(p)
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:c.left])
	c.left = 0
	c.mu.Unlock()
	if err != nil {
		return n, err
	}
	c.stall.Do(func() { close(c.stalled) })
	<-c.closed
	return n, net.ErrClosed
}

// Stalled is closed when a write first stalls.
func (c *StallingConn) Stalled() <-chan struct{} { return c.stalled }

// StallAfter sets how many more bytes pass before writes stall.
func (c *StallingConn) StallAfter(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.left = n
}

// Close closes the connection and releases a stalled write.
func (c *StallingConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// Attempts records when a server was called (on the caller's clock: a
// synctest bubble's fake one in retry tests).
type Attempts struct {
	mu    sync.Mutex
	times []time.Time
}

// Failing records an attempt and reports whether it falls in the first
// window after the first attempt. A tight retry loop would never let fake
// time pass: after limit attempts it is let through, so the test ends and
// fails on the count instead of hanging.
func (a *Attempts) Failing(window time.Duration, limit int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	a.times = append(a.times, now)
	return now.Sub(a.times[0]) < window && len(a.times) < limit
}

// All returns the times of the attempts so far.
func (a *Attempts) All() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times...)
}
