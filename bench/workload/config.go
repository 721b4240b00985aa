package workload

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Config shapes the generated traffic. The zero value is not usable: start
// from DefaultConfig. Field comments name the `sampler bench` flag that sets
// each field; Validate's messages use those names.
type Config struct {
	// Services is the number of distinct services (--services). Each is
	// one SDK instance with its own resource (service.name, service.version,
	// host.name, k8s.pod.name, ...). Default 10.
	Services int
	// MeanSpans is the mean span count of an ordinary trace (--spans): a
	// tree with depth and fan-out, at least 2 spans. Default 10.
	MeanSpans int
	// LargeShare is the share of traces with LargeMin..LargeMax spans
	// (--large-share). Default 0.005.
	LargeShare float64
	// LargeMin and LargeMax bound the span count of large traces
	// (--large-min, --large-max). Defaults 100 and 500; LargeMax is at most
	// MaxSpansPerTrace.
	LargeMin, LargeMax int
	// MaxDepth is the most levels a trace tree has, the root being level 1
	// (--max-depth). Default 6.
	MaxDepth int
	// ErrorShare is the share of traces with one ERROR span
	// (--error-share). Default 0.05.
	ErrorShare float64
	// MedianDuration is the median duration of ordinary (non-tail) traces,
	// log-normally distributed (--median-duration). Default 50ms.
	MedianDuration time.Duration
	// TailShare is the share of traces at least TailMin long
	// (--tail-share). Default 0.01.
	TailShare float64
	// TailMin is where the slow tail starts (--tail-min). Default 2s.
	TailMin time.Duration
	// BatchSpans is the SDK batch processor's batch size: a batch is
	// flushed when it holds this many spans (--batch-spans). Default 512,
	// as in the OpenTelemetry SDKs.
	BatchSpans int
	// BatchTimeout flushes a batch this long after its first span even if
	// it is not full (--batch-timeout). Default 200ms.
	BatchTimeout time.Duration
	// Connections is the number of senders (--connections). Service s
	// sends through connection s % Connections. Default 4.
	Connections int
	// Seed selects the workload: the same Config, start, rate and duration
	// give byte-identical requests (--seed).
	Seed uint64
	// BodyMemory, if set, supplies the memory request bodies are written
	// to, in chunks of size bytes. The benchmark passes memory outside the
	// Go heap, so a pre-encoded load of gigabytes does not change the
	// garbage collector's pacing of the engine measured in the same
	// process. Not a flag; nil means the Go heap.
	BodyMemory func(size int) []byte `json:"-"`
}

// Limits Validate enforces besides the obvious ones.
const (
	maxServices  = 1000 // per-service pre-encoded pieces; span records hold a uint16
	maxMeanSpans = 1000 // ordinary traces are capped at 10×MeanSpans spans
	maxDepth     = 64
	// minMedianDuration keeps the nesting of children strictly inside
	// their parents meaningful at nanosecond resolution.
	minMedianDuration = time.Millisecond
	// maxRunDuration, with TailMin ≤ 1h and tails ≤ 20×TailMin, keeps every
	// span end below 2^48 ns, as the timeline's sort keys need.
	maxRunDuration = 24 * time.Hour
)

// DefaultConfig returns the defaults documented on Config: a mid-sized
// microservice estate with OpenTelemetry SDK batch settings.
func DefaultConfig() Config {
	return Config{
		Services:       10,
		MeanSpans:      10,
		LargeShare:     0.005,
		LargeMin:       100,
		LargeMax:       500,
		MaxDepth:       6,
		ErrorShare:     0.05,
		MedianDuration: 50 * time.Millisecond,
		TailShare:      0.01,
		TailMin:        2 * time.Second,
		BatchSpans:     512,
		BatchTimeout:   200 * time.Millisecond,
		Connections:    4,
	}
}

// Validate reports every problem of the configuration at once, each naming
// the flag that fixes it.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	share := func(flag string, v float64) {
		if !(v >= 0 && v <= 1) { // also rejects NaN
			bad("%s must be between 0 and 1 (got %v)", flag, v)
		}
	}

	if c.Services < 1 || c.Services > maxServices {
		bad("--services must be between 1 and %d (got %d)", maxServices, c.Services)
	}
	if c.MeanSpans < 2 || c.MeanSpans > maxMeanSpans {
		bad("--spans must be between 2 and %d (got %d)", maxMeanSpans, c.MeanSpans)
	}
	share("--large-share", c.LargeShare)
	if c.LargeMin < 2 {
		bad("--large-min must be at least 2 (got %d)", c.LargeMin)
	}
	if c.LargeMax < c.LargeMin {
		bad("--large-max (%d) must be at least --large-min (%d)", c.LargeMax, c.LargeMin)
	}
	if c.LargeMax > MaxSpansPerTrace {
		bad("--large-max must be at most %d (got %d)", MaxSpansPerTrace, c.LargeMax)
	}
	if c.MaxDepth < 2 || c.MaxDepth > maxDepth {
		bad("--max-depth must be between 2 and %d (got %d)", maxDepth, c.MaxDepth)
	}
	share("--error-share", c.ErrorShare)
	if c.MedianDuration < minMedianDuration {
		bad("--median-duration must be at least %v (got %v)", minMedianDuration, c.MedianDuration)
	}
	share("--tail-share", c.TailShare)
	if c.TailMin <= c.MedianDuration {
		bad("--tail-min (%v) must be longer than --median-duration (%v)", c.TailMin, c.MedianDuration)
	}
	if c.TailMin > time.Hour {
		bad("--tail-min must be at most 1h (got %v)", c.TailMin)
	}
	if c.BatchSpans < 1 {
		bad("--batch-spans must be at least 1 (got %d)", c.BatchSpans)
	}
	if c.BatchTimeout <= 0 {
		bad("--batch-timeout must be positive (got %v)", c.BatchTimeout)
	}
	if c.Connections < 1 {
		bad("--connections must be at least 1 (got %d)", c.Connections)
	} else if c.Services >= 1 && c.Connections > c.Services {
		bad("--connections (%d) must not exceed --services (%d): each service sends through one connection, so the rest would stay idle",
			c.Connections, c.Services)
	}
	return errors.Join(errs...)
}

// validateRun checks Build's other arguments, naming their flags.
func validateRun(start time.Time, spansPerSecond float64, duration time.Duration) error {
	var errs []error
	if !(spansPerSecond > 0) || math.IsInf(spansPerSecond, 0) {
		errs = append(errs, fmt.Errorf("--rate must be a positive number of spans/s (got %v)", spansPerSecond))
	}
	if duration <= 0 || duration > maxRunDuration {
		errs = append(errs, fmt.Errorf("--duration must be positive and at most %v (got %v)", maxRunDuration, duration))
	}
	if start.Before(time.Unix(0, 0)) || start.After(time.Unix(1<<33, 0)) {
		errs = append(errs, fmt.Errorf("workload: start time %v is out of range for OTLP timestamps", start))
	}
	if len(errs) == 0 {
		if n := spansPerSecond * duration.Seconds(); n > MaxScheduleSpans {
			errs = append(errs, fmt.Errorf("--rate × --duration asks for %.0f spans; a schedule holds at most %d (about %d bytes each)",
				n, MaxScheduleSpans, approxSpanBytes))
		}
	}
	return errors.Join(errs...)
}
