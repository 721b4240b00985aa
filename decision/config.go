package decision

import (
	"errors"
	"fmt"
	"time"
)

// Config configures an Engine.
type Config struct {
	// DecisionWait is how long after a trace's first span it is decided if
	// nothing decides it earlier. Flag --decision-wait. Default 30s.
	DecisionWait time.Duration
	// RootWait is how long after the root span arrives a trace is decided:
	// time for stragglers that end after the root. Flag --root-wait.
	// Default 2s.
	RootWait time.Duration
	// MaxTraceAge is the hard limit on how long a trace stays buffered after
	// its first span, whatever else is configured. Flag --max-trace-age.
	// Default 5m.
	MaxTraceAge time.Duration
	// Tick is how often the engine looks for due traces: the granularity of
	// decision timing. Default 100ms.
	Tick time.Duration
	// KeptCacheSize and DroppedCacheSize bound the decision caches, in trace
	// IDs per generation (two generations are kept, so up to twice this).
	// At about 30 bytes per entry the defaults hold up to 12 MB and 60 MB.
	KeptCacheSize    int
	DroppedCacheSize int
	// RuleAttribute writes the deciding rule's name on the root span of
	// kept traces (tailsift.sampling.rule). Flag --rule-attribute.
	RuleAttribute bool
	// Shadow decides and records as usual but forwards every trace, each
	// root span marked with the decision the policies took
	// (tailsift.sampling.decision, tailsift.sampling.rule): a policy can be
	// tried on live traffic without losing data. Flag --shadow.
	Shadow bool
	// StressRelief decides the oldest buffered traces early, with the spans
	// they have, when the buffer is about to refuse spans (its memory
	// limit nearly reached with no disk room to spill to): the policies
	// still keep error and high-priority traces, and clients keep being
	// served. Flag --stress-relief. Default true.
	StressRelief bool
	// Decisions, if set, persists each decision for DecisionTTL, and
	// Recover loads them back: late spans after a restart follow the
	// decision made before it (--data-dir).
	Decisions DecisionStore
	// DecisionTTL is how long persisted decisions are kept. Default 30m.
	DecisionTTL time.Duration
	// RecentDecisions is how many of the latest decisions the explain API
	// can describe in full (about 290 bytes each, allocated at start: a
	// fixed 28 MiB for the default 100,000, outside memory_limit, which
	// bounds the buffer). Default 100,000.
	RecentDecisions int
}

// DecisionStore is where decisions are persisted; internal/store
// implements it. Methods are safe for concurrent use and do not retain the
// slices passed in.
type DecisionStore interface {
	// Write writes values[i] under keys[i], expiring after ttl; with sync
	// it returns once they are on stable storage.
	Write(keys, values [][]byte, ttl time.Duration, sync bool) error
	// Scan calls fn for each key with the prefix; the slices are valid
	// during the call only.
	Scan(prefix []byte, fn func(key, value []byte) error) error
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		DecisionWait:     30 * time.Second,
		RootWait:         2 * time.Second,
		MaxTraceAge:      5 * time.Minute,
		Tick:             100 * time.Millisecond,
		KeptCacheSize:    200_000,
		DroppedCacheSize: 1_000_000,
		StressRelief:     true,
		DecisionTTL:      30 * time.Minute,
		RecentDecisions:  100_000,
	}
}

// EnsureDefaults returns c with its zero fields set to their defaults, for
// New; the caller's Config is not changed. No field of this Config has
// one: a zero duration or cache size is reported by Validate rather than
// quietly replaced, and the zero of the others means something (no explain
// ring, no stress relief, no decision store).
func (c Config) EnsureDefaults() Config { return c }

// Validate reports every problem of c.EnsureDefaults(), the configuration
// New would run with.
func (c Config) Validate() error {
	c = c.EnsureDefaults()
	var errs []error
	positive := func(d time.Duration, name string) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	positive(c.DecisionWait, "decision_wait (--decision-wait)")
	positive(c.RootWait, "root_wait (--root-wait)")
	positive(c.MaxTraceAge, "max_trace_age (--max-trace-age)")
	positive(c.Tick, "decision tick")
	if c.Decisions != nil {
		positive(c.DecisionTTL, "decision TTL")
	}
	if c.RecentDecisions < 0 {
		errs = append(errs, fmt.Errorf("recent decisions must be >= 0, got %d", c.RecentDecisions))
	}
	if c.KeptCacheSize < 1 {
		errs = append(errs, fmt.Errorf("decision kept cache size must be at least 1, got %d", c.KeptCacheSize))
	}
	if c.DroppedCacheSize < 1 {
		errs = append(errs, fmt.Errorf("decision dropped cache size must be at least 1, got %d", c.DroppedCacheSize))
	}
	return errors.Join(errs...)
}

// firstSeenWait is how long after its first span a trace is due.
func (c Config) firstSeenWait() time.Duration { return min(c.DecisionWait, c.MaxTraceAge) }
