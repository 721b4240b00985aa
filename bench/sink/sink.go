package sink

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/otlpserver"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

// Config says where the sink listens.
type Config struct {
	// GRPCAddr is the OTLP/gRPC listen address, e.g. "127.0.0.1:0"; ""
	// disables gRPC.
	GRPCAddr string
	// HTTPAddr is the OTLP/HTTP listen address (POST /v1/traces,
	// application/x-protobuf, optionally gzip); "" disables HTTP.
	HTTPAddr string
	// MaxRequestBytes limits one request, after decompression. Zero means
	// DefaultMaxRequestBytes.
	MaxRequestBytes int
}

// DefaultMaxRequestBytes is larger than any batch an exporter sends by
// default: the sink must not be the reason a trace is lost.
const DefaultMaxRequestBytes = 64 << 20

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.GRPCAddr == "" && c.HTTPAddr == "" {
		errs = append(errs, errors.New("sink: set GRPCAddr or HTTPAddr (or both)"))
	}
	if c.MaxRequestBytes < 0 {
		errs = append(errs, fmt.Errorf("sink: MaxRequestBytes is %d, want >= 0 (0: default %d)", c.MaxRequestBytes, DefaultMaxRequestBytes))
	}
	return errors.Join(errs...)
}

// Sink receives forwarded traces and checks them against a manifest.
type Sink struct {
	cfg Config
	cur atomic.Pointer[measurement]

	grpcLis net.Listener
	grpcSrv *grpc.Server
	httpLis net.Listener
	httpSrv *http.Server

	wg       sync.WaitGroup
	serveErr chan error // one slot per server
	shutdown sync.Once
	stopErr  error

	bufs *otlpserver.Buffers // request bodies
	reqs sync.Pool           // *otlpwire.Request
}

// maxPooledBuffer keeps one huge request from pinning its buffer forever.
const maxPooledBuffer = 4 << 20

// Start listens on the configured addresses and serves until Shutdown.
// Until the first Expect the sink only counts requests and spans.
func Start(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	s := &Sink{cfg: cfg, serveErr: make(chan error, 2), bufs: otlpserver.NewBuffers(64<<10, maxPooledBuffer)}
	s.reqs.New = func() any { return new(otlpwire.Request) }
	s.cur.Store(newMeasurement(nil, time.Now()))
	if cfg.GRPCAddr != "" {
		lis, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return nil, fmt.Errorf("sink: otlp-grpc: %w", err)
		}
		s.grpcLis = lis
		s.grpcSrv = grpc.NewServer(
			grpc.ForceServerCodecV2(rawcodec.Codec{}),
			grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
		)
		otlpserver.RegisterTraceService(s.grpcSrv, s.exportGRPC, s.countUnread, s.bufs)
	}
	if cfg.HTTPAddr != "" {
		lis, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			if s.grpcLis != nil {
				s.grpcLis.Close()
			}
			return nil, fmt.Errorf("sink: otlp-http: %w", err)
		}
		s.httpLis = lis
		mux := http.NewServeMux()
		mux.HandleFunc("/v1/traces", s.handleHTTP)
		s.httpSrv = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
		}
	}
	if s.grpcSrv != nil {
		s.wg.Go(func() {
			if err := s.grpcSrv.Serve(s.grpcLis); err != nil {
				s.serveErr <- fmt.Errorf("sink: otlp-grpc: %w", err)
			}
		})
	}
	if s.httpSrv != nil {
		s.wg.Go(func() {
			if err := s.httpSrv.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.serveErr <- fmt.Errorf("sink: otlp-http: %w", err)
			}
		})
	}
	return s, nil
}

// GRPCAddr returns the address of the OTLP/gRPC server, or nil.
func (s *Sink) GRPCAddr() net.Addr {
	if s.grpcLis == nil {
		return nil
	}
	return s.grpcLis.Addr()
}

// HTTPAddr returns the address of the OTLP/HTTP server, or nil.
func (s *Sink) HTTPAddr() net.Addr {
	if s.httpLis == nil {
		return nil
	}
	return s.httpLis.Addr()
}

// Expect starts a new measurement: it forgets everything received so far
// and checks what arrives from now on against m. runStart is the wall-clock
// start of the run: m's EndOffsets are relative to it. m must stay
// read-only (except Trace.Undelivered) until the next Expect.
func (s *Sink) Expect(m *workload.Manifest, runStart time.Time) {
	if m == nil {
		panic("BUG: sink.Expect with a nil manifest")
	}
	s.cur.Store(newMeasurement(m, runStart))
}

// Progress returns the counters since Expect. It takes no lock.
func (s *Sink) Progress() Progress { return s.cur.Load().progress() }

// Report classifies every trace of the manifest given to Expect; slow is
// the duration threshold of workload.ClassSlow. Before any Expect the
// report has only the request and span counts. Recording waits while
// Report runs.
func (s *Sink) Report(slow time.Duration) Report { return s.cur.Load().report(slow) }

// Shutdown stops both servers, waiting until ctx is done for requests in
// progress, then closes what remains. It returns ctx's error if it had to
// cut requests short, and any error a server stopped with. Idempotent: later
// calls return the first call's result.
func (s *Sink) Shutdown(ctx context.Context) error {
	s.shutdown.Do(func() {
		var errs []error
		if s.httpSrv != nil {
			if err := s.httpSrv.Shutdown(ctx); err != nil {
				s.httpSrv.Close()
				errs = append(errs, fmt.Errorf("sink: otlp-http: %w", err))
			}
		}
		if s.grpcSrv != nil {
			stopped := make(chan struct{})
			go func() { s.grpcSrv.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-ctx.Done():
				s.grpcSrv.Stop()
				<-stopped
				errs = append(errs, fmt.Errorf("sink: otlp-grpc: %w", ctx.Err()))
			}
		}
		s.wg.Wait()
		close(s.serveErr)
		for err := range s.serveErr {
			errs = append(errs, err)
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// countUnread counts a gRPC request whose body could not be read. When
// the client cancelled or its connection closed mid-upload (an exporter
// killed while sending) the request was abandoned, never malformed.
func (s *Sink) countUnread(err error) {
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable:
		s.cur.Load().abandoned.Add(1)
	default:
		s.cur.Load().malformed.Add(1)
	}
}

// consume scans body and records its spans. The only error is a malformed
// request, which is counted and records nothing.
func (s *Sink) consume(body []byte) error {
	ms := s.cur.Load()
	req := s.reqs.Get().(*otlpwire.Request)
	defer func() { req.Reset(); s.reqs.Put(req) }()
	if err := req.Scan(body); err != nil {
		ms.malformed.Add(1)
		return err
	}
	ms.record(req.Spans)
	return nil
}

// exportGRPC records one TraceService/Export request.
func (s *Sink) exportGRPC(_ context.Context, body []byte) error {
	if err := s.consume(body); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// handleHTTP serves POST /v1/traces. Every refusal is counted as a
// malformed request: nothing of it was recorded.
func (s *Sink) handleHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "OTLP/HTTP accepts POST only", http.StatusMethodNotAllowed)
		return
	}
	refuse := func(httpCode int, msg string) {
		s.cur.Load().malformed.Add(1)
		writeStatus(w, httpCode, msg)
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != otlpserver.ContentProtobuf {
		refuse(http.StatusUnsupportedMediaType,
			fmt.Sprintf("unsupported Content-Type %q: the sink reads %s", req.Header.Get("Content-Type"), otlpserver.ContentProtobuf))
		return
	}
	buf := s.bufs.Get()
	defer s.bufs.Put(buf)
	var err error
	*buf, err = otlpserver.ReadBody(w, req, *buf, int64(s.cfg.MaxRequestBytes))
	switch {
	case errors.Is(err, otlpserver.ErrTooLarge):
		refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", s.cfg.MaxRequestBytes))
		return
	case errors.Is(err, otlpserver.ErrUnsupportedEncoding):
		refuse(http.StatusUnsupportedMediaType, err.Error())
		return
	case err != nil:
		refuse(http.StatusBadRequest, err.Error())
		return
	}
	// consume counts its own refusals.
	if err := s.consume(*buf); err != nil {
		writeStatus(w, http.StatusBadRequest, err.Error())
		return
	}
	otlpserver.WriteBody(w, otlpserver.ContentProtobuf, http.StatusOK, nil) // empty ExportTraceServiceResponse
}

// writeStatus writes a google.rpc.Status body, as OTLP/HTTP prescribes for
// errors. The gRPC code is InvalidArgument: the sink refuses only what it
// cannot read, and retrying would not help.
func writeStatus(w http.ResponseWriter, httpCode int, msg string) {
	otlpserver.WriteStatus(w, otlpserver.ContentProtobuf, httpCode, codes.InvalidArgument, msg)
}
