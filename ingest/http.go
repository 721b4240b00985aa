package ingest

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlpjson"
)

const (
	contentProtobuf = "application/x-protobuf"
	contentJSON     = "application/json"
)

var errTooLarge = errors.New("request body too large")

func (r *Receiver) handleHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "OTLP/HTTP accepts POST only", http.StatusMethodNotAllowed)
		return
	}
	mediaType, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || (mediaType != contentProtobuf && mediaType != contentJSON) {
		r.metrics.observe("http", outcomeUnsupported, 0)
		writeStatus(w, contentProtobuf, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("unsupported Content-Type %q: use %s or %s", req.Header.Get("Content-Type"), contentProtobuf, contentJSON))
		return
	}
	raw := r.getBuf()
	defer r.putBuf(raw)
	*raw, err = r.readBody(w, req, *raw)
	switch {
	case errors.Is(err, errTooLarge):
		r.metrics.observe("http", outcomeTooLarge, 0)
		writeStatus(w, mediaType, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
			fmt.Sprintf("request larger than %d bytes", r.cfg.MaxRequestBytes))
		return
	case errors.Is(err, errUnsupportedEncoding):
		r.metrics.observe("http", outcomeUnsupported, 0)
		writeStatus(w, mediaType, http.StatusUnsupportedMediaType, codes.InvalidArgument, err.Error())
		return
	case err != nil:
		r.metrics.observe("http", outcomeMalformed, 0)
		writeStatus(w, mediaType, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		return
	}
	body := *raw
	if mediaType == contentJSON {
		pb := r.getBuf()
		defer r.putBuf(pb)
		if *pb, err = otlpjson.Decode((*pb)[:0], body); err != nil {
			r.metrics.observe("http", outcomeMalformed, 0)
			writeStatus(w, mediaType, http.StatusBadRequest, codes.InvalidArgument, err.Error())
			return
		}
		body = *pb
	}
	spans, err := r.consume(req.Context(), body)
	var bad malformedError
	switch {
	case err == nil:
		r.metrics.observe("http", outcomeOK, spans)
		if mediaType == contentJSON {
			writeBody(w, mediaType, http.StatusOK, []byte("{}"))
		} else {
			writeBody(w, mediaType, http.StatusOK, nil) // empty ExportTraceServiceResponse
		}
	case errors.As(err, &bad):
		r.metrics.observe("http", outcomeMalformed, 0)
		r.log.Debug("malformed OTLP/HTTP request", "err", err)
		writeStatus(w, mediaType, http.StatusBadRequest, codes.InvalidArgument, err.Error())
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
		writeStatus(w, mediaType, code, codes.Unavailable, err.Error())
	}
}

var errUnsupportedEncoding = errors.New("unsupported Content-Encoding: use gzip or none")

// readBody reads the (possibly gzip-compressed) body into dst, enforcing
// the size limit before and after decompression.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request, dst []byte) ([]byte, error) {
	limit := int64(r.cfg.MaxRequestBytes)
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
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
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
// errors, encoded like the request.
func writeStatus(w http.ResponseWriter, mediaType string, httpCode int, code codes.Code, msg string) {
	st := &spb.Status{Code: int32(code), Message: msg}
	var body []byte
	if mediaType == contentJSON {
		body, _ = protojson.Marshal(st)
	} else {
		body, _ = proto.Marshal(st)
	}
	writeBody(w, mediaType, httpCode, body)
}

func writeBody(w http.ResponseWriter, mediaType string, code int, body []byte) {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}
