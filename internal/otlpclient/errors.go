package otlpclient

import (
	"errors"
	"time"
)

// Error is a failed call, classified. Client methods return it for every
// failure; callers with failures of their own that a retry may cure (a
// destination other than OTLP, say) may return one too.
type Error struct {
	// Err is the cause: a gRPC status error, "HTTP 503 Service
	// Unavailable", a transport error.
	Err error
	// Retryable reports whether the same request may succeed if sent
	// again. The zero value is permanent: the request must not be sent
	// again (OTLP says to drop it).
	Retryable bool
	// Hint is the least wait the server asked for before the next attempt
	// (gRPC RetryInfo, HTTP Retry-After); 0 if it gave none. Never
	// negative; only set when Retryable.
	Hint time.Duration
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Classify reports whether err is worth another attempt and the server's
// hint for when (see Error.Hint). Errors that are not an *Error, nil
// included, are not retryable.
func Classify(err error) (retry bool, hint time.Duration) {
	if e, ok := errors.AsType[*Error](err); ok && e.Retryable {
		return true, max(e.Hint, 0)
	}
	return false, 0
}
