package ingest

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tailsift/tailsift/internal/otlpjson"
	"github.com/tailsift/tailsift/internal/otlpserver"
)

func (r *Receiver) handleHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "OTLP/HTTP accepts POST only", http.StatusMethodNotAllowed)
		return
	}
	mediaType, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || (mediaType != otlpserver.ContentProtobuf && mediaType != otlpserver.ContentJSON) {
		r.metrics.observe("http", outcomeUnsupported, 0)
		otlpserver.WriteStatus(w, otlpserver.ContentProtobuf, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("unsupported Content-Type %q: use %s or %s", req.Header.Get("Content-Type"), otlpserver.ContentProtobuf, otlpserver.ContentJSON))
		return
	}
	if r.cfg.Authenticate != nil {
		ctx, ok := r.authHTTP(w, req, mediaType)
		if !ok {
			return
		}
		req = req.WithContext(ctx)
	}
	r.limits.enter()
	conn := httpConn(req.Context())
	h := hold{l: &r.limits, max: r.limits.httpMaxBytes, fresh: !conn.isProven()}
	defer r.limits.leave(&h)
	up := &httpUpload{rc: *http.NewResponseController(w)}
	r.uploads.push(&up.upload, "http", conn, 0, time.Now(), up)
	raw := r.bufs.Get()
	defer r.bufs.Put(raw)
	*raw, err = otlpserver.ReadBodyBudget(w, req, *raw, int64(r.cfg.MaxRequestBytes), func(n int64) bool {
		if !h.grow(n) {
			r.uploads.stopStalled(time.Now())
			return false
		}
		up.held.Store(h.n)
		return true
	})
	if !r.uploads.remove(&up.upload) && err == nil {
		// Stopped as stalled just as its body arrived: its connection's
		// read deadline is spent, so it must not serve another request.
		err = otlpserver.ErrOverBudget
	}
	switch {
	case errors.Is(err, otlpserver.ErrOverBudget):
		r.metrics.refuse("http", reasonInflightBytes, true)
		refuseHTTP(w, mediaType, reasonInflightBytes)
		return
	case errors.Is(err, otlpserver.ErrTooLarge):
		r.metrics.observe("http", outcomeTooLarge, 0)
		otlpserver.WriteStatus(w, mediaType, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
			fmt.Sprintf("request larger than %d bytes", r.cfg.MaxRequestBytes))
		return
	case errors.Is(err, otlpserver.ErrUnsupportedEncoding):
		r.metrics.observe("http", outcomeUnsupported, 0)
		otlpserver.WriteStatus(w, mediaType, http.StatusUnsupportedMediaType, codes.InvalidArgument, err.Error())
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Stopped as stalled (counted then), or past request_timeout: the
		// client gets the answer if it is still reading.
		r.metrics.requests.WithLabelValues("http", outcomeOverloaded).Inc()
		refuseHTTP(w, mediaType, reasonInflightBytes)
		return
	case err != nil:
		r.metrics.observe("http", outcomeMalformed, 0)
		otlpserver.WriteStatus(w, mediaType, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		return
	}
	body := *raw
	h.resize(int64(len(body))) // give back what the read reserved ahead
	h.arrived()
	if !r.limits.process() {
		r.metrics.refuse("http", reasonConcurrentRequests, true)
		refuseHTTP(w, mediaType, reasonConcurrentRequests)
		return
	}
	defer r.limits.done()
	if mediaType == otlpserver.ContentJSON {
		// The protobuf is about as large as the JSON or smaller (hex IDs
		// halve, names become one-byte tags): hold that much while it is
		// written, then what it came to. Where the budget could never
		// hold that much, decode first and judge the real size.
		est := int64(len(body))
		if err := r.need(&h, est); errors.Is(err, errInflightFull) {
			r.refuseHTTPNeed(w, mediaType, err)
			return
		} else if err != nil {
			est = 0
		}
		pb := r.bufs.Get()
		defer r.bufs.Put(pb)
		if *pb, err = otlpjson.Decode((*pb)[:0], body); err != nil {
			r.metrics.observe("http", outcomeMalformed, 0)
			otlpserver.WriteStatus(w, mediaType, http.StatusBadRequest, codes.InvalidArgument, err.Error())
			return
		}
		if err := r.need(&h, int64(len(*pb))-est); err != nil {
			r.refuseHTTPNeed(w, mediaType, err)
			return
		}
		body = *pb
	}
	spans, err := r.consume(req.Context(), body, &h)
	if err == nil {
		r.metrics.observe("http", outcomeOK, spans)
		conn.prove()
		if mediaType == otlpserver.ContentJSON {
			otlpserver.WriteBody(w, mediaType, http.StatusOK, []byte("{}"))
		} else {
			otlpserver.WriteBody(w, mediaType, http.StatusOK, nil) // empty ExportTraceServiceResponse
		}
		return
	}
	// Declared here: errors.As moves its targets to the heap, which the
	// answer to an accepted request need not pay for.
	var bad malformedError
	var big tooLargeError
	switch {
	case errors.As(err, &big):
		r.metrics.observe("http", outcomeTooLarge, 0)
		otlpserver.WriteStatus(w, mediaType, http.StatusRequestEntityTooLarge, codes.InvalidArgument, err.Error())
	case errors.As(err, &bad):
		r.metrics.observe("http", outcomeMalformed, 0)
		r.log.Debug("malformed OTLP/HTTP request", "err", err)
		otlpserver.WriteStatus(w, mediaType, http.StatusBadRequest, codes.InvalidArgument, err.Error())
	default:
		delay, overloaded := retryAfter(err)
		code, outcome := http.StatusServiceUnavailable, outcomeUnavailable
		if overloaded {
			code, outcome = http.StatusTooManyRequests, outcomeOverloaded
			if errors.Is(err, errInflightFull) {
				r.metrics.refused.WithLabelValues("http", reasonInflightBytes).Inc()
			}
		} else {
			delay = time.Second
		}
		r.metrics.observe("http", outcome, spans)
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(delay.Round(time.Second)/time.Second))))
		otlpserver.WriteStatus(w, mediaType, code, codes.Unavailable, err.Error())
	}
}

// httpUpload is an HTTP request on the uploads list.
type httpUpload struct {
	upload
	rc http.ResponseController
}

// stopUpload makes the request's reads fail at once. Connection deadlines
// may be set from any goroutine; net/http sets its own again before it
// reads the next request, and a stopped request closes its connection.
func (u *httpUpload) stopUpload() { u.rc.SetReadDeadline(time.Unix(1, 0)) }

// refuseHTTPNeed answers a request whose bytes, once read, do not fit:
// 413 if they never could, 429 otherwise.
func (r *Receiver) refuseHTTPNeed(w http.ResponseWriter, mediaType string, err error) {
	if errors.Is(err, errInflightFull) {
		r.metrics.refuse("http", reasonInflightBytes, true)
		refuseHTTP(w, mediaType, reasonInflightBytes)
		return
	}
	r.metrics.observe("http", outcomeTooLarge, 0)
	otlpserver.WriteStatus(w, mediaType, http.StatusRequestEntityTooLarge, codes.InvalidArgument, err.Error())
}

// refuseHTTP answers a request refused by the limits: 429 with
// Retry-After, which OTLP clients retry. The connection closes after the
// answer: otherwise net/http would first read and discard up to 256 KiB of
// the body the node has no room for, keeping a client that stalls waiting
// for its answer until request_timeout.
func refuseHTTP(w http.ResponseWriter, mediaType, reason string) {
	msg := "too many requests in progress (max_concurrent_requests), try again later"
	if reason == reasonInflightBytes {
		msg = "too many request bytes in progress (max_inflight_bytes), try again later"
	}
	w.Header().Set("Connection", "close")
	w.Header().Set("Retry-After", strconv.Itoa(int(refusalRetryAfter/time.Second)))
	otlpserver.WriteStatus(w, mediaType, http.StatusTooManyRequests, codes.Unavailable, msg)
}
