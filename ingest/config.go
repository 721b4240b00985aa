package ingest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Config configures the receivers.
type Config struct {
	// GRPCAddr is the OTLP/gRPC listen address; empty disables it.
	// Flag --otlp-grpc. Default 127.0.0.1:4317.
	GRPCAddr string
	// HTTPAddr is the OTLP/HTTP listen address; empty disables it.
	// Flag --otlp-http. Default 127.0.0.1:4318.
	HTTPAddr string
	// MaxRequestBytes bounds a request's size, compressed and decompressed.
	// Flag --max-request-size. Default 16 MiB.
	MaxRequestBytes int
	// MaxInflightBytes bounds the request bytes held by requests in
	// progress on both receivers: bodies as received, decompressed and
	// transcoded from JSON, plus their scan index. A gRPC request holds
	// MaxRequestBytes + StreamOverhead from the moment its stream opens
	// until its body has arrived (gRPC gives no earlier look at its size),
	// so MaxInflightBytes / (MaxRequestBytes + StreamOverhead) uploads run
	// at once; an HTTP request holds what it has read (at most twice), and
	// HTTP requests leave room for one gRPC upload, which must reserve all
	// at once while they take room in small steps. Uploads on connections
	// that have had no request accepted yet share half the budget, so that
	// a flood of new connections cannot crowd out the clients already
	// sending. An upload slower than 1 MiB/s for what it holds is stopped
	// when others need the room. Past the budget, requests are refused
	// with ResourceExhausted + RetryInfo / 429. At least MinInflightBytes.
	// Flag --max-inflight-bytes. Default 128 MiB (the node's default is a
	// quarter of memory_limit).
	MaxInflightBytes int64
	// MaxConcurrentRequests bounds the requests past their upload on both
	// receivers together: scanned and handed to the consumer, which may
	// block (a full buffer, a write-ahead log sync). Past it requests are
	// refused like past MaxInflightBytes. Requests still arriving are
	// bounded by MaxConnections (HTTP) and MaxInflightBytes (gRPC), not by
	// this: clients that stall mid-upload would otherwise hold every slot.
	// Flag --max-concurrent-requests. Default 1024.
	MaxConcurrentRequests int
	// MaxConnections bounds the open connections per listener; further
	// connections wait in the kernel's accept queue until one closes (as
	// Prometheus's --web.max-connections). An idle connection costs about
	// 20 KiB here (gRPC: 32 KiB read buffer and three goroutines when
	// busy), so the default holds both listeners' connections under
	// 128 MiB. Flag --max-connections. Default 1024.
	MaxConnections int
	// MaxStreamsPerConnection is gRPC's MaxConcurrentStreams: the streams
	// one connection may have open. Peers use a few per connection
	// (cluster forward workers, hand-offs). Default 100, as most HTTP/2
	// servers.
	MaxStreamsPerConnection int
	// RequestTimeout bounds how long a request may take to arrive: an
	// HTTP request's headers and body (net/http's ReadTimeout), a gRPC
	// message from its stream's first frame (the upload is cancelled when
	// the next stream comes after that, as no other needs its room
	// before).
	// Flag --request-timeout. Default 60s.
	RequestTimeout time.Duration
	// Authenticate, if set, names each request's tenant or refuses it:
	// UNAUTHENTICATED / 401, before the body is read (a gRPC stream before
	// it takes room in MaxInflightBytes). nil admits every request, tenant
	// "". OnAuthFailure, if set, is told of each refusal (the audit log);
	// it must not block.
	Authenticate  Authenticator
	OnAuthFailure func(protocol, remote, reason string)
	// TLS, if set, is the config both listeners serve TLS with (it may ask
	// for client certificates); nil is plaintext. Its handshake counts
	// against neither limit above but MaxConnections.
	TLS *tls.Config
}

// StreamOverhead is what a gRPC stream may hold beyond its message: the
// stream's flow-control window (data a client may send past the message
// before the server answers) and its header list. Both are fixed by the
// receiver's server options.
const StreamOverhead = streamWindow + maxHeaderBytes

// MinInflightBytes is the smallest MaxInflightBytes for this
// configuration: room for one request of the largest size in the half
// that connections not proven share (see MaxInflightBytes), or such a
// request would be refused forever with a retryable answer. A gRPC
// request needs MaxRequestBytes + StreamOverhead, an HTTP one
// MaxRequestBytes + 1 (the read that sees the end); HTTP requests leave
// one gRPC request's room, which twice the gRPC need leaves them.
func (c Config) MinInflightBytes() int64 {
	if c.GRPCAddr != "" {
		return 2 * (int64(c.MaxRequestBytes) + StreamOverhead)
	}
	return 2 * (int64(c.MaxRequestBytes) + 1)
}

// DefaultInflightBytes is the budget a node with memoryLimit of buffer
// gives requests in progress unless told otherwise: a quarter of it (the
// share the Go runtime's memory limit leaves them), but room for four
// gRPC uploads and an HTTP request at least. A gRPC request holds
// max_request_size until it has been taken, so with room for only one,
// clients sending at once would mostly be told to retry (measured: the
// overload test's four connections retried 100 times more).
func (c Config) DefaultInflightBytes(memoryLimit int64) int64 {
	n := int64(c.MaxRequestBytes) + 1 // HTTP
	if c.GRPCAddr != "" {
		n += 4 * (int64(c.MaxRequestBytes) + StreamOverhead)
	}
	return max(memoryLimit/4, c.MinInflightBytes(), n)
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:                "127.0.0.1:4317",
		HTTPAddr:                "127.0.0.1:4318",
		MaxRequestBytes:         16 << 20,
		MaxInflightBytes:        128 << 20,
		MaxConcurrentRequests:   1024,
		MaxConnections:          1024,
		MaxStreamsPerConnection: 100,
		RequestTimeout:          60 * time.Second,
	}
}

// EnsureDefaults returns c with its zero fields set to their defaults, for
// New; the caller's Config is not changed. No field of this Config has
// one: a zero limit is reported by Validate rather than quietly replaced,
// and an empty address disables its receiver.
func (c Config) EnsureDefaults() Config { return c }

// Validate reports every problem of c.EnsureDefaults(), the configuration
// New would run with.
func (c Config) Validate() error {
	c = c.EnsureDefaults()
	var errs []error
	if c.GRPCAddr == "" && c.HTTPAddr == "" {
		errs = append(errs, errors.New("no receiver: set otlp_grpc (--otlp-grpc) or otlp_http (--otlp-http)"))
	}
	if c.MaxRequestBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_request_size (--max-request-size) must be at least 1KiB, got %d", c.MaxRequestBytes))
	}
	if need := c.MinInflightBytes(); c.MaxInflightBytes < need {
		errs = append(errs, fmt.Errorf("max_inflight_bytes (--max-inflight-bytes) must be at least %d (room for one request of max_request_size on each receiver), got %d",
			need, c.MaxInflightBytes))
	}
	if c.MaxConcurrentRequests < 1 {
		errs = append(errs, fmt.Errorf("max_concurrent_requests (--max-concurrent-requests) must be at least 1, got %d", c.MaxConcurrentRequests))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("max_connections (--max-connections) must be at least 1, got %d", c.MaxConnections))
	}
	if c.MaxStreamsPerConnection < 1 {
		errs = append(errs, fmt.Errorf("ingest MaxStreamsPerConnection must be at least 1, got %d", c.MaxStreamsPerConnection))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("request_timeout (--request-timeout) must be positive, got %v", c.RequestTimeout))
	}
	return errors.Join(errs...)
}
