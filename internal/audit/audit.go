// Package audit writes security-relevant events as JSON lines, one object
// per event: {"time":…,"level":"INFO","msg":"<event>",…fields}. It is not
// the log: it has no level filter, goes to its own file (or stderr), and
// is meant to be kept and shipped. Every line passes through the node's
// redactor: secrets of the configuration never appear in it.
package audit

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/tailsift/tailsift/internal/lograte"
)

// Log writes audit events. A nil *Log writes nothing, so components can
// hold one unconditionally. Its methods are safe for concurrent use.
type Log struct {
	l *slog.Logger

	mu      sync.Mutex
	limits  map[string]*lograte.Limiter
	perKind time.Duration
}

// New writes events to w through wrap (the node's redacting handler, or
// nil). Events written with Limited are rate limited to one per second per
// event name.
func New(w io.Writer, wrap func(slog.Handler) slog.Handler) *Log {
	var h slog.Handler = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
	if wrap != nil {
		h = wrap(h)
	}
	return &Log{l: slog.New(h), limits: map[string]*lograte.Limiter{}, perKind: time.Second}
}

// Event writes one event with its fields (slog key-value pairs).
func (a *Log) Event(event string, args ...any) {
	if a == nil {
		return
	}
	a.l.Log(context.Background(), slog.LevelInfo, event, args...)
}

// Limited writes the event unless one of the same name was written in the
// last second; the next one written says how many were suppressed. For
// events an attacker can repeat at will (authentication failures).
func (a *Log) Limited(event string, args ...any) {
	if a == nil {
		return
	}
	a.mu.Lock()
	lim := a.limits[event]
	if lim == nil {
		lim = &lograte.Limiter{Every: a.perKind}
		a.limits[event] = lim
	}
	a.mu.Unlock()
	if ok, suppressed := lim.Allow(); ok {
		a.Event(event, append(args, "similar_events_suppressed", suppressed)...)
	}
}
