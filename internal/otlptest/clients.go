package otlptest

import (
	"net"
	"sync"
	"sync/atomic"
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

// CountingListener counts in N the bytes read off its connections: what
// a server received on the wire.
type CountingListener struct {
	net.Listener
	N *atomic.Int64
}

func (l CountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.N}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// FakeClock is a clock a test moves by hand.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock starts at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now is the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock on by d.
func (c *FakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
