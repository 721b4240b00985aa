package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/tailsift/tailsift/internal/otlpserver"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

// Consumer takes the spans of scanned requests. Implementations must be
// safe for concurrent use and must not retain req or its bytes after
// returning.
//
// An error that has a method RetryAfter() time.Duration means "overloaded:
// retry after that long"; any other error means the consumer is
// unavailable. Either way the consumer must have taken none of the spans.
type Consumer interface {
	Consume(ctx context.Context, req *otlpwire.Request) error
}

// Receiver runs the OTLP receivers.
type Receiver struct {
	cfg      Config
	consumer Consumer
	log      *slog.Logger
	metrics  *metrics

	grpcLis   net.Listener
	grpcSrv   *grpc.Server
	httpLis   net.Listener
	httpServe net.Listener // httpLis, or TLS over it
	httpSrv   *http.Server
	wg        sync.WaitGroup
	shutdown  sync.Once

	bufs *otlpserver.Buffers // request bodies
	reqs sync.Pool           // *otlpwire.Request

	limits       limits
	uploads      uploads
	grpcRefusals map[string]error // by reason, built once: refusing allocates nothing
}

// maxPooledBuffer keeps one huge request from pinning its buffer forever.
const maxPooledBuffer = 4 << 20

// Fixed per-connection and per-stream bounds, the same for every
// deployment; StreamOverhead is what they allow a stream beyond its
// message.
const (
	// streamWindow is gRPC's per-stream flow-control window, static: the
	// data a client may send on a stream before the server reads it. gRPC
	// opens the window to the whole message once it has read the length
	// prefix (which the tap's reservation covers); a dynamic window would
	// grow to 16 MiB per stream on fast links, data no reservation covers.
	streamWindow = 64 << 10
	// connWindow is the connection's window. gRPC returns connection
	// window as frames arrive, whatever the streams have read, so it
	// bounds throughput, not memory: as large as the dynamic window grows.
	connWindow = 16 << 20
	// maxHeaderBytes bounds a request's headers (gRPC's default is 16 MiB,
	// net/http's 1 MiB, read before any limit here applies). OTLP clients
	// send a few small headers; 32 KiB leaves room for large tokens.
	maxHeaderBytes = 32 << 10
	// handshakeTimeout bounds a new gRPC connection's HTTP/2 handshake,
	// as ReadHeaderTimeout does an HTTP request's headers: a connection
	// that sends nothing gives its slot back.
	handshakeTimeout = 10 * time.Second
)

// New starts the configured receivers, feeding c.
func New(cfg Config, c Consumer, reg prometheus.Registerer, log *slog.Logger) (*Receiver, error) {
	cfg = cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Receiver{cfg: cfg, consumer: c, log: log, bufs: otlpserver.NewBuffers(64<<10, maxPooledBuffer),
		limits: limits{maxBytes: cfg.MaxInflightBytes, httpMaxBytes: cfg.MaxInflightBytes, maxProcessing: int64(cfg.MaxConcurrentRequests)}}
	if cfg.GRPCAddr != "" && cfg.HTTPAddr != "" {
		// gRPC must reserve a whole max_request_size at once, HTTP takes
		// room in small steps: without this, a stream of HTTP uploads would
		// always fill the room a gRPC upload waits for.
		r.limits.httpMaxBytes -= int64(cfg.MaxRequestBytes) + StreamOverhead
	}
	r.metrics = newMetrics(reg, &r.limits)
	r.uploads.init(cfg.RequestTimeout, r.metrics.refused)
	r.grpcRefusals = map[string]error{
		reasonInflightBytes:      grpcRefusal(reasonInflightBytes),
		reasonConcurrentRequests: grpcRefusal(reasonConcurrentRequests),
	}
	r.reqs.New = func() any { return new(otlpwire.Request) }
	if cfg.GRPCAddr != "" {
		lis, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return nil, fmt.Errorf("otlp-grpc: %w", err)
		}
		r.grpcLis = newLimitListener(lis, cfg.MaxConnections,
			r.metrics.connections.WithLabelValues("grpc"), r.metrics.connectionsFull.WithLabelValues("grpc"))
		r.grpcSrv = grpc.NewServer(
			grpc.ForceServerCodecV2(rawcodec.Codec{}),
			grpc.Creds(connCreds{transportCredentials(cfg.TLS)}),
			grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
			grpc.InTapHandle(r.tapGRPC),
			grpc.MaxConcurrentStreams(uint32(cfg.MaxStreamsPerConnection)),
			grpc.StaticStreamWindowSize(streamWindow),
			grpc.StaticConnWindowSize(connWindow),
			grpc.MaxHeaderListSize(maxHeaderBytes),
			grpc.ConnectionTimeout(handshakeTimeout),
			// Clients may ping every 10 s, also between requests (gRPC's
			// default, 5 min and only during calls, closes the connections
			// of clients that keep them alive); more often is abuse, and
			// gRPC closes the connection.
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
			grpc.KeepaliveParams(keepalive.ServerParameters{
				// An idle connection gives its slot back; the client
				// reconnects when it next sends.
				MaxConnectionIdle: 5 * time.Minute,
				// A peer that vanished (no FIN) is found within 80 s, and
				// its streams give back what they hold.
				Time:    time.Minute,
				Timeout: 20 * time.Second,
			}),
		)
		otlpserver.RegisterTraceService(r.grpcSrv, r.exportGRPC, nil, r.bufs)
	}
	if cfg.HTTPAddr != "" {
		lis, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			if r.grpcLis != nil {
				r.grpcLis.Close()
			}
			return nil, fmt.Errorf("otlp-http: %w", err)
		}
		r.httpLis = newLimitListener(lis, cfg.MaxConnections,
			r.metrics.connections.WithLabelValues("http"), r.metrics.connectionsFull.WithLabelValues("http"))
		r.httpServe = r.httpLis
		if cfg.TLS != nil {
			// net/http does the handshake (bounded by ReadHeaderTimeout)
			// and serves HTTP/2 where the client offers it.
			tc := cfg.TLS.Clone()
			tc.NextProtos = []string{"h2", "http/1.1"}
			r.httpServe = tls.NewListener(r.httpLis, tc)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/v1/traces", r.handleHTTP)
		r.httpSrv = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       cfg.RequestTimeout,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    maxHeaderBytes,
			ConnContext:       httpConnContext,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	if r.grpcSrv != nil {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := r.grpcSrv.Serve(r.grpcLis); err != nil {
				log.Error("otlp-grpc server stopped", "err", err)
			}
		}()
	}
	if r.httpSrv != nil {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := r.httpSrv.Serve(r.httpServe); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("otlp-http server stopped", "err", err)
			}
		}()
	}
	return r, nil
}

// transportCredentials serves TLS with cfg, or plaintext if it is nil.
func transportCredentials(cfg *tls.Config) credentials.TransportCredentials {
	if cfg == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(cfg)
}

// GRPCAddr returns the address the gRPC receiver listens on, or nil.
func (r *Receiver) GRPCAddr() net.Addr {
	if r.grpcLis == nil {
		return nil
	}
	return r.grpcLis.Addr()
}

// HTTPAddr returns the address the HTTP receiver listens on, or nil.
func (r *Receiver) HTTPAddr() net.Addr {
	if r.httpLis == nil {
		return nil
	}
	return r.httpLis.Addr()
}

// Shutdown stops accepting requests and waits for those in progress until
// ctx is done; then it closes the remaining connections. Idempotent.
func (r *Receiver) Shutdown(ctx context.Context) error {
	var err error
	r.shutdown.Do(func() {
		if r.httpSrv != nil {
			err = r.httpSrv.Shutdown(ctx)
			if err != nil {
				r.httpSrv.Close()
			}
		}
		if r.grpcSrv != nil {
			stopped := make(chan struct{})
			go func() { r.grpcSrv.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-ctx.Done():
				r.grpcSrv.Stop()
				<-stopped
				err = errors.Join(err, ctx.Err())
			}
		}
		r.wg.Wait()
	})
	return err
}

// Abort closes the listeners and every connection at once, failing the
// requests in progress, as a crashed process would. Shutdown after Abort
// does nothing.
func (r *Receiver) Abort() {
	r.shutdown.Do(func() {
		if r.httpSrv != nil {
			r.httpSrv.Close()
		}
		if r.grpcSrv != nil {
			r.grpcSrv.Stop()
		}
		r.wg.Wait()
	})
}

// consume scans body and hands it to the consumer. It returns the number of
// spans and an error classified for the protocol edges. The scan index is
// added to h, or the request is refused (see hold.need).
func (r *Receiver) consume(ctx context.Context, body []byte, h *hold) (int, error) {
	req := r.reqs.Get().(*otlpwire.Request)
	defer func() { req.Reset(); r.reqs.Put(req) }()
	if err := req.Scan(body); err != nil {
		return 0, malformedError{err}
	}
	if len(req.Spans) == 0 {
		return 0, nil
	}
	if err := r.need(h, indexBytes(req)); err != nil {
		return len(req.Spans), err
	}
	if err := r.consumer.Consume(ctx, req); err != nil {
		return len(req.Spans), err
	}
	if r.cfg.Authenticate != nil {
		r.metrics.tenants.add(TenantOf(ctx), len(req.Spans))
	}
	return len(req.Spans), nil
}

// indexBytes is the size of req's scan index, counted in the budget.
func indexBytes(req *otlpwire.Request) int64 { return req.IndexBytes() }

// malformedError marks input the client must not retry.
type malformedError struct{ err error }

func (e malformedError) Error() string { return e.err.Error() }
func (e malformedError) Unwrap() error { return e.err }

// retryAfter returns the delay an overload error asks for, if err is one.
func retryAfter(err error) (time.Duration, bool) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter(), true
	}
	return 0, false
}
