package export

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of [Config], as returned by [DefaultConfig].
const (
	// DefaultEndpoint writes one OTLP JSON object per line to Config.Writer.
	DefaultEndpoint = "stdout"
	// DefaultMaxRequestBytes is what gRPC servers accept by default, and
	// what most backends accept over HTTP.
	DefaultMaxRequestBytes = 4 << 20
	// MinMaxRequestBytes is the least MaxRequestBytes: room for one small
	// span with its resource.
	MinMaxRequestBytes = 1 << 10
	// DefaultBatchMaxBytes keeps requests well below DefaultMaxRequestBytes,
	// while amortizing per-request costs. A zero BatchMaxBytes means the
	// lesser of this and MaxRequestBytes.
	DefaultBatchMaxBytes = 512 << 10
	// DefaultBatchTimeout bounds the delay a quiet period adds to a trace.
	DefaultBatchTimeout = 200 * time.Millisecond
	// DefaultQueueSize is the number of built requests that may wait for a
	// sender: 64 × 512 KiB = 32 MiB, more only for requests that hold one
	// span bigger than a batch (each at most MaxRequestBytes).
	DefaultQueueSize = 64
	// DefaultWorkers is the number of requests in flight at once.
	DefaultWorkers = 4
	// DefaultTimeout bounds one attempt to send one request.
	DefaultTimeout = 10 * time.Second
	// DefaultRetryInitial is the first backoff step.
	DefaultRetryInitial = 100 * time.Millisecond
	// DefaultRetryMax caps the backoff step.
	DefaultRetryMax = 5 * time.Second
	// DefaultRetryMaxElapsed is how long a request is retried before its
	// spans are counted failed (retries_exhausted): long enough to ride out
	// a backend restart.
	DefaultRetryMaxElapsed = 5 * time.Minute
)

// Config configures an [Exporter]. A zero field means its default; New
// copies the Config and never modifies the caller's.
type Config struct {
	// Endpoint is the destination:
	//   - "stdout" (default): one OTLP JSON object per line to Writer;
	//   - "host:port": OTLP/gRPC, plaintext;
	//   - "http://..." or "https://...": OTLP/HTTP protobuf POST; an empty
	//     or "/" URL path means "/v1/traces".
	Endpoint string
	// Writer receives the JSON lines of the "stdout" endpoint; nil means
	// os.Stdout.
	Writer io.Writer
	// BatchMaxBytes: a batch is sent when its request reaches this size.
	// At most MaxRequestBytes; 0 means DefaultBatchMaxBytes or
	// MaxRequestBytes, whichever is less.
	BatchMaxBytes int
	// MaxRequestBytes: no request sent is larger. A trace bigger than a
	// batch is split across requests; a span that cannot fit in a request
	// alone (with its resource and scope) is dropped before it is batched
	// and counted failed (oversize): the destination would refuse it on
	// every attempt, holding back the traffic queued behind it.
	MaxRequestBytes int
	// BatchTimeout: a batch is sent at most this long after its first span.
	BatchTimeout time.Duration
	// QueueSize is the number of built requests waiting for a sender; a
	// batch that finds the queue full is counted failed (queue_full).
	QueueSize int
	// Workers is the number of concurrent senders.
	Workers int
	// Timeout bounds each attempt.
	Timeout time.Duration
	// RetryInitial is the first backoff step; steps double up to RetryMax
	// and each wait is drawn uniformly from [0, step] (full jitter). A
	// server's retry hint (gRPC RetryInfo, HTTP Retry-After) lengthens the
	// drawn wait to at least the hint; it never shortens it.
	RetryInitial time.Duration
	// RetryMax caps the backoff step.
	RetryMax time.Duration
	// RetryMaxElapsed: a request still failing this long after its first
	// attempt is given up (retries_exhausted).
	RetryMaxElapsed time.Duration

	// TLS, Headers and Compression are the OTLP client's (see
	// otlpclient.Config): TLS for a host:port endpoint means gRPC over TLS.
	TLS         *tls.Config
	Headers     map[string]string
	Compression string
}

// DefaultConfig returns the defaults documented on the Default* constants.
func DefaultConfig() Config {
	return Config{
		Endpoint:        DefaultEndpoint,
		BatchMaxBytes:   DefaultBatchMaxBytes,
		MaxRequestBytes: DefaultMaxRequestBytes,
		BatchTimeout:    DefaultBatchTimeout,
		QueueSize:       DefaultQueueSize,
		Workers:         DefaultWorkers,
		Timeout:         DefaultTimeout,
		RetryInitial:    DefaultRetryInitial,
		RetryMax:        DefaultRetryMax,
		RetryMaxElapsed: DefaultRetryMaxElapsed,
	}
}

// EnsureDefaults returns c with every zero field set to its default, for
// New; the caller's Config is not changed.
func (c Config) EnsureDefaults() Config {
	d := DefaultConfig()
	if c.Endpoint == "" {
		c.Endpoint = d.Endpoint
	}
	setDefault(&c.MaxRequestBytes, d.MaxRequestBytes)
	if c.MaxRequestBytes > 0 {
		setDefault(&c.BatchMaxBytes, min(d.BatchMaxBytes, c.MaxRequestBytes))
	}
	setDefault(&c.BatchTimeout, d.BatchTimeout)
	setDefault(&c.QueueSize, d.QueueSize)
	setDefault(&c.Workers, d.Workers)
	setDefault(&c.Timeout, d.Timeout)
	setDefault(&c.RetryInitial, d.RetryInitial)
	setDefault(&c.RetryMax, d.RetryMax)
	setDefault(&c.RetryMaxElapsed, d.RetryMaxElapsed)
	return c
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Validate reports every problem of c.EnsureDefaults(), the configuration
// New would run with, each naming the Config field to fix.
func (c Config) Validate() error {
	c = c.EnsureDefaults()
	var errs []error
	if _, err := parseEndpoint(c.Endpoint); err != nil {
		errs = append(errs, err)
	}
	positive := func(field string, v int64, unit string) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("export: %s is %d%s, must be positive (or 0 for the default)", field, v, unit))
		}
	}
	positive("BatchMaxBytes", int64(c.BatchMaxBytes), "")
	switch {
	case c.MaxRequestBytes < MinMaxRequestBytes:
		errs = append(errs, fmt.Errorf("export: MaxRequestBytes (max_export_request_size, --max-export-request-size) is %d, must be at least %d (or 0 for the default %d)",
			c.MaxRequestBytes, MinMaxRequestBytes, DefaultMaxRequestBytes))
	case c.BatchMaxBytes > c.MaxRequestBytes:
		errs = append(errs, fmt.Errorf("export: BatchMaxBytes (%d) is more than MaxRequestBytes (%d, max_export_request_size)",
			c.BatchMaxBytes, c.MaxRequestBytes))
	}
	positive("QueueSize", int64(c.QueueSize), "")
	positive("Workers", int64(c.Workers), "")
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"BatchTimeout", c.BatchTimeout},
		{"Timeout", c.Timeout},
		{"RetryInitial", c.RetryInitial},
		{"RetryMax", c.RetryMax},
		{"RetryMaxElapsed", c.RetryMaxElapsed},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("export: %s is %v, must be positive (or 0 for the default)", d.field, d.v))
		}
	}
	if c.RetryInitial > 0 && c.RetryMax > 0 && c.RetryMax < c.RetryInitial {
		errs = append(errs, fmt.Errorf("export: RetryMax (%v) is less than RetryInitial (%v)", c.RetryMax, c.RetryInitial))
	}
	return errors.Join(errs...)
}

type endpointKind int

const (
	endpointStdout endpointKind = iota
	endpointGRPC
	endpointHTTP
)

// endpoint is a parsed Config.Endpoint.
type endpoint struct {
	kind   endpointKind
	target string // gRPC: host:port; HTTP: full URL with path
}

func parseEndpoint(s string) (endpoint, error) {
	switch {
	case s == "stdout":
		return endpoint{kind: endpointStdout}, nil
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		u, err := url.Parse(s)
		if err != nil {
			return endpoint{}, fmt.Errorf("export: Endpoint %q: %w", s, err)
		}
		if u.Host == "" {
			return endpoint{}, fmt.Errorf("export: Endpoint %q: URL has no host", s)
		}
		if u.Path == "" || u.Path == "/" {
			u.Path, u.RawPath = "/v1/traces", ""
		}
		return endpoint{kind: endpointHTTP, target: u.String()}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.Contains(s, "://") {
		return endpoint{}, fmt.Errorf(`export: Endpoint %q: want "stdout", host:port (OTLP/gRPC) or an http:// or https:// URL (OTLP/HTTP)`, s)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return endpoint{}, fmt.Errorf("export: Endpoint %q: port %q is not a number in 1..65535", s, port)
	}
	return endpoint{kind: endpointGRPC, target: s}, nil
}
