package ingest

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Reasons the receiver itself refuses a request, a bounded label set.
const (
	reasonInflightBytes      = "inflight_bytes"      // max_inflight_bytes
	reasonConcurrentRequests = "concurrent_requests" // max_concurrent_requests
	reasonStalled            = "stalled"             // an upload stopped to make room
)

// refusalRetryAfter is the delay a refused client is asked to wait: the
// requests holding the budget finish in milliseconds to seconds.
const refusalRetryAfter = time.Second

// limits bound the requests in progress on both receivers: the bytes they
// hold (the in-flight budget) and how many are past their upload. Requests
// reserve before they read, so what is held never exceeds the limits; a
// refusal costs the client a round trip and the node nothing.
//
// Requests still arriving are not capped in number: each HTTP one takes a
// connection (max_connections), each gRPC one max_request_size of the
// budget. Capping them too would let clients that stall mid-upload hold
// every slot.
//
// Uploads on connections that have had no request accepted yet ("fresh")
// share half the budget: a flood of new connections cannot crowd out the
// clients already sending, whose connections are proven; a new client
// competes with the flood for its first request only.
type limits struct {
	maxBytes      int64
	httpMaxBytes  int64 // what HTTP requests may fill: maxBytes less one gRPC upload's room
	maxProcessing int64
	bytes         atomic.Int64 // held by requests in progress
	fresh         atomic.Int64 // of bytes, held by uploads on connections not proven; at most maxBytes/2
	requests      atomic.Int64 // in progress: arriving or past their upload
	processing    atomic.Int64 // past their upload: scanned and handed to the consumer
}

// reserve takes n more bytes if they fit under limit (maxBytes or
// httpMaxBytes) and, for a fresh upload, in the fresh half.
func (l *limits) reserve(n, limit int64, fresh bool) bool {
	if fresh && !addWithin(&l.fresh, n, l.maxBytes/2) {
		return false
	}
	if !addWithin(&l.bytes, n, limit) {
		if fresh {
			l.fresh.Add(-n)
		}
		return false
	}
	return true
}

// addWithin adds n to v if the sum stays within limit. A compare-and-swap
// rather than add-then-undo, so that two requests racing for the last
// room do not both fail.
func addWithin(v *atomic.Int64, n, limit int64) bool {
	for {
		cur := v.Load()
		if cur+n > limit {
			return false
		}
		if v.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// enter counts a request in progress; leave ends it, giving back what h
// holds.
func (l *limits) enter() { l.requests.Add(1) }
func (l *limits) leave(h *hold) {
	h.arrived()
	l.bytes.Add(-h.n)
	h.n = 0
	l.requests.Add(-1)
}

// process admits a request whose body is in to be scanned and consumed,
// or reports that too many are; done ends it.
func (l *limits) process() bool {
	if l.processing.Add(1) > l.maxProcessing {
		l.processing.Add(-1)
		return false
	}
	return true
}
func (l *limits) done() { l.processing.Add(-1) }

// hold is the bytes one request holds against the budget, up to max (the
// budget, or HTTP's share of it). One goroutine uses it at a time.
type hold struct {
	l          *limits
	n          int64
	max        int64
	fresh      bool  // arriving on a connection not proven: growth counts in limits.fresh
	freshBytes int64 // of n, counted in limits.fresh
}

// resize grows or shrinks the hold to n bytes; growing fails, changing
// nothing, when the budget has no room.
func (h *hold) resize(n int64) bool {
	switch d := n - h.n; {
	case d > 0:
		if !h.l.reserve(d, h.max, h.fresh) {
			return false
		}
		if h.fresh {
			h.freshBytes += d
		}
	case d < 0:
		h.l.bytes.Add(d)
		if f := min(h.freshBytes, -d); f > 0 {
			h.l.fresh.Add(-f)
			h.freshBytes -= f
		}
	}
	h.n = n
	return true
}

// arrived ends the request's upload: what it holds no longer counts in
// the fresh half.
func (h *hold) arrived() {
	h.l.fresh.Add(-h.freshBytes)
	h.fresh, h.freshBytes = false, 0
}

// grow adds n bytes to the hold if they fit.
func (h *hold) grow(n int64) bool { return h.resize(h.n + n) }

// need grows the hold by n bytes the request needs once read (its JSON
// transcode, its scan index), or says why not: errInflightFull if others
// hold the room, a tooLargeError if the budget could never hold it.
func (h *hold) need(n int64) error {
	if h.grow(n) {
		return nil
	}
	if h.n+n > h.max {
		return tooLargeError{need: h.n + n, limit: h.max}
	}
	return errInflightFull
}

// tooLargeError refuses for good a request that needs more than the whole
// budget: retrying cannot help (gRPC: ResourceExhausted without
// RetryInfo, as for its own size limit; HTTP: 413).
type tooLargeError struct{ need, limit int64 }

func (e tooLargeError) Error() string {
	return fmt.Sprintf("request needs %d bytes while in progress (body, JSON transcode, scan index), more than max_inflight_bytes (%d)", e.need, e.limit)
}

// errInflightFull refuses a request whose bytes do not fit in the budget
// once read (its scan index, its JSON transcode).
var errInflightFull = &inflightFullError{}

type inflightFullError struct{}

func (*inflightFullError) Error() string {
	return "ingest: too many request bytes in progress (max_inflight_bytes), try again later"
}
func (*inflightFullError) RetryAfter() time.Duration { return refusalRetryAfter }

// ticket is a gRPC stream's admission: the bytes it holds. It is the
// stream's context (the tap handle returns it), so that the Export handler
// finds it without one more allocation per call. Exactly one party ends
// it: the Export handler, once it has claimed the ticket with stop;
// otherwise (another method, or a client gone before its request arrived)
// the context.AfterFunc registered by the tap, when the stream's context
// ends.
type ticket struct {
	context.Context // the stream's, cancelled if its upload stalls
	hold
	upload             // in uploads while the message arrives
	stop   func() bool // context.AfterFunc's: true if the handler now owns the ticket
	cancel context.CancelFunc
	u      *uploads
}

type ticketKey struct{}

// Value finds the ticket for the handler.
func (t *ticket) Value(key any) any {
	if key == (ticketKey{}) {
		return t
	}
	return t.Context.Value(key)
}

// stopUpload cancels the stream: its AfterFunc gives its bytes back.
func (t *ticket) stopUpload() { t.cancel() }

// end gives the ticket's request and bytes back: run by AfterFunc.
func (t *ticket) end() {
	t.u.remove(&t.upload)
	t.l.leave(&t.hold)
	t.cancel()
}

// tapGRPC admits a new gRPC stream before gRPC reads anything of its
// message: it reserves MaxRequestBytes+StreamOverhead, since nothing tells
// the message's size before its bytes arrive, and gRPC opens the stream's
// window to the whole message as soon as it reads the length prefix.
// Refused streams get ResourceExhausted with RetryInfo, which OTLP clients
// retry. It runs on the connection's reader goroutine with the transport
// locked: no waiting here.
func (r *Receiver) tapGRPC(ctx context.Context, info *tap.Info) (context.Context, error) {
	if r.cfg.Authenticate != nil {
		var err error
		if ctx, err = r.authGRPC(ctx, info); err != nil {
			return nil, err
		}
	}
	n := int64(r.cfg.MaxRequestBytes) + StreamOverhead
	now := time.Now()
	conn := grpcConn(ctx)
	fresh := !conn.isProven()
	if !r.limits.reserve(n, r.limits.maxBytes, fresh) {
		r.uploads.stopStalled(now)
		r.metrics.refuse("grpc", reasonInflightBytes, info.FullMethodName == exportMethod)
		return nil, r.grpcRefusals[reasonInflightBytes]
	}
	r.uploads.stopExpired(now)
	r.limits.enter()
	t := &ticket{hold: hold{l: &r.limits, n: n, max: r.limits.maxBytes, fresh: fresh}, u: &r.uploads}
	if fresh {
		t.freshBytes = n
	}
	t.Context, t.cancel = context.WithCancel(ctx)
	r.uploads.push(&t.upload, "grpc", conn, n, now, t)
	t.stop = context.AfterFunc(t.Context, t.end)
	return t, nil
}

// grpcRefusal is the status for a request refused for reason: retryable,
// with the delay OTLP clients need to retry ResourceExhausted at all.
func grpcRefusal(reason string) error {
	msg := "too many requests in progress (max_concurrent_requests), try again later"
	if reason == reasonInflightBytes {
		msg = "too many request bytes in progress (max_inflight_bytes), try again later"
	}
	st, err := status.New(codes.ResourceExhausted, msg).
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(refusalRetryAfter)})
	if err != nil {
		panic("BUG: RetryInfo does not marshal: " + err.Error())
	}
	return st.Err()
}
