package ingest

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
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
	raw := r.bufs.Get()
	defer r.bufs.Put(raw)
	*raw, err = otlpserver.ReadBody(w, req, *raw, int64(r.cfg.MaxRequestBytes))
	switch {
	case errors.Is(err, otlpserver.ErrTooLarge):
		r.metrics.observe("http", outcomeTooLarge, 0)
		otlpserver.WriteStatus(w, mediaType, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
			fmt.Sprintf("request larger than %d bytes", r.cfg.MaxRequestBytes))
		return
	case errors.Is(err, otlpserver.ErrUnsupportedEncoding):
		r.metrics.observe("http", outcomeUnsupported, 0)
		otlpserver.WriteStatus(w, mediaType, http.StatusUnsupportedMediaType, codes.InvalidArgument, err.Error())
		return
	case err != nil:
		r.metrics.observe("http", outcomeMalformed, 0)
		otlpserver.WriteStatus(w, mediaType, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		return
	}
	body := *raw
	if mediaType == otlpserver.ContentJSON {
		pb := r.bufs.Get()
		defer r.bufs.Put(pb)
		if *pb, err = otlpjson.Decode((*pb)[:0], body); err != nil {
			r.metrics.observe("http", outcomeMalformed, 0)
			otlpserver.WriteStatus(w, mediaType, http.StatusBadRequest, codes.InvalidArgument, err.Error())
			return
		}
		body = *pb
	}
	spans, err := r.consume(req.Context(), body)
	var bad malformedError
	switch {
	case err == nil:
		r.metrics.observe("http", outcomeOK, spans)
		if mediaType == otlpserver.ContentJSON {
			otlpserver.WriteBody(w, mediaType, http.StatusOK, []byte("{}"))
		} else {
			otlpserver.WriteBody(w, mediaType, http.StatusOK, nil) // empty ExportTraceServiceResponse
		}
	case errors.As(err, &bad):
		r.metrics.observe("http", outcomeMalformed, 0)
		r.log.Debug("malformed OTLP/HTTP request", "err", err)
		otlpserver.WriteStatus(w, mediaType, http.StatusBadRequest, codes.InvalidArgument, err.Error())
	default:
		delay, overloaded := retryAfter(err)
		code, outcome := http.StatusServiceUnavailable, outcomeUnavailable
		if overloaded {
			code, outcome = http.StatusTooManyRequests, outcomeOverloaded
		} else {
			delay = time.Second
		}
		r.metrics.observe("http", outcome, spans)
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(delay.Round(time.Second)/time.Second))))
		otlpserver.WriteStatus(w, mediaType, code, codes.Unavailable, err.Error())
	}
}
