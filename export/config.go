package export

import (
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
	// DefaultBatchMaxBytes keeps requests well below the 4 MiB that gRPC
	// servers accept by default, while amortizing per-request costs.
	DefaultBatchMaxBytes = 512 << 10
	// DefaultBatchTimeout bounds the delay a quiet period adds to a trace.
	DefaultBatchTimeout = 200 * time.Millisecond
	// DefaultQueueSize is the number of built requests that may wait for a
	// sender: 64 × 512 KiB = 32 MiB at most.
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
	BatchMaxBytes int
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
	// server's retry hint (gRPC RetryInfo, HTTP Retry-After) replaces the
	// drawn wait.
	RetryInitial time.Duration
	// RetryMax caps the backoff step.
	RetryMax time.Duration
	// RetryMaxElapsed: a request still failing this long after its first
	// attempt is given up (retries_exhausted).
	RetryMaxElapsed time.Duration
}

// DefaultConfig returns the defaults documented on the Default* constants.
func DefaultConfig() Config {
	return Config{
		Endpoint:        DefaultEndpoint,
		BatchMaxBytes:   DefaultBatchMaxBytes,
		BatchTimeout:    DefaultBatchTimeout,
		QueueSize:       DefaultQueueSize,
		Workers:         DefaultWorkers,
		Timeout:         DefaultTimeout,
		RetryInitial:    DefaultRetryInitial,
		RetryMax:        DefaultRetryMax,
		RetryMaxElapsed: DefaultRetryMaxElapsed,
	}
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Endpoint == "" {
		c.Endpoint = d.Endpoint
	}
	setDefault(&c.BatchMaxBytes, d.BatchMaxBytes)
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

// Validate reports every problem of c (after defaults for zero fields), each
// naming the Config field to fix.
func (c Config) Validate() error {
	c = c.withDefaults()
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
