package ingest

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
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
	// proven is set once a request on the connection was accepted, and
	// cleared when one of its uploads is stopped as stalled: requests on
	// connections not proven share half the in-flight budget (limits).
	proven atomic.Bool
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

// connCreds is gRPC's transport (plaintext or TLS) with the connection
// attached to the peer's AuthInfo, so that the tap handle knows a stream's
// connection (peer.FromContext).
type connCreds struct {
	credentials.TransportCredentials
}

// connInfo is the AuthInfo of a connection accepted by a limitListener:
// the transport's own (credentials.TLSInfo names a client's certificate)
// and the connection.
type connInfo struct {
	credentials.AuthInfo
	conn *limitConn
}

func (c connCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	lc, _ := raw.(*limitConn)
	return conn, connInfo{AuthInfo: info, conn: lc}, nil
}

func (c connCreds) Clone() credentials.TransportCredentials {
	return connCreds{c.TransportCredentials.Clone()}
}

// grpcConn returns the connection of a gRPC stream's context, or nil.
func grpcConn(ctx context.Context) *limitConn {
	if p, ok := peer.FromContext(ctx); ok {
		if ci, ok := p.AuthInfo.(connInfo); ok {
			return ci.conn
		}
	}
	return nil
}

type connKey struct{}

// httpConnContext is http.Server.ConnContext: it puts the connection in
// its requests' contexts.
func httpConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitConn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// httpConn returns the connection of an HTTP request's context, or nil.
func httpConn(ctx context.Context) *limitConn {
	lc, _ := ctx.Value(connKey{}).(*limitConn)
	return lc
}

// isProven reports whether c had a request accepted (nil: no).
func (c *limitConn) isProven() bool { return c != nil && c.proven.Load() }

// prove marks c as having had a request accepted.
func (c *limitConn) prove() {
	if c != nil && !c.proven.Load() {
		c.proven.Store(true)
	}
}

// demote clears c's proof: one of its uploads stalled.
func (c *limitConn) demote() {
	if c != nil {
		c.proven.Store(false)
	}
}
