package sink

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP exporters may compress with gzip
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/bench/workload"
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

	bufs sync.Pool // *[]byte request bodies
	reqs sync.Pool // *otlpwire.Request
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
	s := &Sink{cfg: cfg, serveErr: make(chan error, 2)}
	s.bufs.New = func() any { b := make([]byte, 0, 64<<10); return &b }
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
		s.grpcSrv.RegisterService(&traceServiceDesc, s)
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

func (s *Sink) getBuf() *[]byte { return s.bufs.Get().(*[]byte) }

func (s *Sink) putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		*b = (*b)[:0]
		s.bufs.Put(b)
	}
}

// traceServiceDesc serves opentelemetry.proto.collector.trace.v1.TraceService
// with a handler that receives the request as bytes (see rawcodec).
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: grpcExport}},
	Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// emptyResponse is an ExportTraceServiceResponse with no partial success.
// It is only ever read.
var emptyResponse = []byte{}

func grpcExport(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*Sink)
	buf := s.getBuf()
	defer s.putBuf(buf)
	if err := dec(buf); err != nil { // too large, or undecompressable
		s.cur.Load().malformed.Add(1)
		return nil, err
	}
	handle := func(ctx context.Context, in any) (any, error) {
		if err := s.consume(*in.(*[]byte)); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return &emptyResponse, nil
	}
	if interceptor == nil {
		return handle(ctx, buf)
	}
	return interceptor(ctx, buf, &grpc.UnaryServerInfo{Server: srv, FullMethod: exportMethod}, handle)
}

const contentProtobuf = "application/x-protobuf"

var errTooLarge = errors.New("request body too large")

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
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != contentProtobuf {
		refuse(http.StatusUnsupportedMediaType,
			fmt.Sprintf("unsupported Content-Type %q: the sink reads %s", req.Header.Get("Content-Type"), contentProtobuf))
		return
	}
	buf := s.getBuf()
	defer s.putBuf(buf)
	var err error
	*buf, err = s.readBody(w, req, *buf)
	switch {
	case errors.Is(err, errTooLarge):
		refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", s.cfg.MaxRequestBytes))
		return
	case errors.Is(err, errUnsupportedEncoding):
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
	writeBody(w, http.StatusOK, nil) // empty ExportTraceServiceResponse
}

var errUnsupportedEncoding = errors.New("unsupported Content-Encoding: use gzip or none")

// readBody reads the (possibly gzip-compressed) body into dst, enforcing
// the size limit before and after decompression.
func (s *Sink) readBody(w http.ResponseWriter, req *http.Request, dst []byte) ([]byte, error) {
	limit := int64(s.cfg.MaxRequestBytes)
	if req.ContentLength > limit {
		return dst, errTooLarge
	}
	var body io.Reader = http.MaxBytesReader(w, req.Body, limit)
	switch req.Header.Get("Content-Encoding") {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return dst, fmt.Errorf("gzip: %w", tooLarge(err))
		}
		defer zr.Close()
		body = zr
	default:
		return dst, errUnsupportedEncoding
	}
	// Read one byte past the limit to tell "exactly at" from "over".
	out, err := readAll(dst[:0], io.LimitReader(body, limit+1))
	if err != nil {
		return out, tooLarge(err)
	}
	if int64(len(out)) > limit {
		return out, errTooLarge
	}
	return out, nil
}

// tooLarge turns MaxBytesReader's error into errTooLarge.
func tooLarge(err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errTooLarge
	}
	return err
}

// readAll is io.ReadAll appending to a reused buffer.
func readAll(dst []byte, r io.Reader) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// writeStatus writes a google.rpc.Status body, as OTLP/HTTP prescribes for
// errors. The gRPC code is InvalidArgument: the sink refuses only what it
// cannot read, and retrying would not help.
func writeStatus(w http.ResponseWriter, httpCode int, msg string) {
	body, _ := proto.Marshal(status.New(codes.InvalidArgument, msg).Proto())
	writeBody(w, httpCode, body)
}

func writeBody(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", contentProtobuf)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}
