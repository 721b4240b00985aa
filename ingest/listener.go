package ingest

import (
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// limitListener accepts at most cap(slots) connections at a time. When
// full, Accept waits for one to close, and further connections wait in
// the kernel's accept queue, where they cost this process nothing (as
// golang.org/x/net/netutil.LimitListener, which Prometheus uses for
// --web.max-connections; this one also counts). Idle and half-open
// connections are closed by the servers' timeouts, so the slots come
// back.
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{} // closed by Close: Accept stops waiting
	once  sync.Once
	open  prometheus.Gauge
	waits prometheus.Counter
}

func newLimitListener(l net.Listener, n int, open prometheus.Gauge, waits prometheus.Counter) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{}), open: open, waits: waits}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.waits.Inc()
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	l.open.Inc()
	return &limitConn{Conn: c, l: l}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back when closed, once.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Dec()
		<-c.l.slots
	})
	return err
}

// CloseWrite passes through to the TCP connection: net/http half-closes
// before closing a connection whose request body it did not read (a
// refusal), so that the client reads the answer rather than a reset.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
