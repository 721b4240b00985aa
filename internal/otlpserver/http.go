package otlpserver

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// OTLP/HTTP content types.
const (
	ContentProtobuf = "application/x-protobuf"
	ContentJSON     = "application/json"
)

// Errors of ReadBody the caller maps to status codes (413, 415, 429).
var (
	ErrTooLarge            = errors.New("request body too large")
	ErrUnsupportedEncoding = errors.New("unsupported Content-Encoding: use gzip or none")
	ErrOverBudget          = errors.New("request body does not fit in the in-flight budget")
)

// ReadBody reads the request body, gzip-decompressed if so encoded, into
// dst[:0], enforcing limit before and after decompression (a small
// compressed body may expand past it). Any other error means a malformed
// body (400).
func ReadBody(w http.ResponseWriter, r *http.Request, dst []byte, limit int64) ([]byte, error) {
	return ReadBodyBudget(w, r, dst, limit, nil)
}

// ReadBodyBudget is ReadBody that asks reserve for room before it reads
// bytes into dst, in doubling steps (64 KiB first) as the body, or what it
// decompresses to, arrives, never past the Content-Length of an
// uncompressed body. Room is taken as bytes arrive, not when announced, so
// that a client that stalls mid-upload holds what it sent, not what it
// said it would send. When reserve refuses, it stops reading and returns
// ErrOverBudget; the caller owns what was reserved (at most twice what was
// read, plus one byte) and gives it back. Decompression streams: only the
// decompressed bytes are held.
func ReadBodyBudget(w http.ResponseWriter, r *http.Request, dst []byte, limit int64, reserve func(n int64) bool) ([]byte, error) {
	if r.ContentLength > limit {
		return dst[:0], ErrTooLarge
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, limit)
	most := limit + 1 // one byte past the limit tells "exactly at" from "over"
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
		if r.ContentLength >= 0 {
			most = r.ContentLength + 1 // +1: room for the read that sees EOF
		}
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return dst[:0], fmt.Errorf("gzip: %w", tooLarge(err))
		}
		defer zr.Close()
		body = zr
	default:
		return dst[:0], ErrUnsupportedEncoding
	}
	out, err := readAll(dst[:0], io.LimitReader(body, limit+1), most, reserve)
	if err != nil {
		return out, tooLarge(err)
	}
	if int64(len(out)) > limit {
		return out, ErrTooLarge
	}
	return out, nil
}

// tooLarge turns MaxBytesReader's error into ErrTooLarge.
func tooLarge(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return ErrTooLarge
	}
	return err
}

// readAll is io.ReadAll appending to a reused buffer. With reserve, it
// reads no byte it has not reserved: 64 KiB, then as much again as
// reserved so far each time, never past most in all (but at least one
// byte, for the read that sees EOF).
func readAll(dst []byte, r io.Reader, most int64, reserve func(int64) bool) ([]byte, error) {
	var reserved int64
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		room := dst[len(dst):cap(dst)]
		if reserve != nil {
			if int64(len(dst)) == reserved {
				step := max(reserved, 64<<10)
				step = max(min(step, most-reserved), 1)
				if !reserve(step) {
					return dst, ErrOverBudget
				}
				reserved += step
			}
			room = room[:min(int64(len(room)), reserved-int64(len(dst)))]
		}
		n, err := r.Read(room)
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// WriteStatus writes an error as OTLP/HTTP prescribes: a google.rpc.Status
// body encoded like the request (JSON or protobuf).
func WriteStatus(w http.ResponseWriter, mediaType string, httpCode int, code codes.Code, msg string) {
	st := &spb.Status{Code: int32(code), Message: msg}
	var body []byte
	if mediaType == ContentJSON {
		body, _ = protojson.Marshal(st)
	} else {
		mediaType = ContentProtobuf
		body, _ = proto.Marshal(st)
	}
	WriteBody(w, mediaType, httpCode, body)
}

// WriteBody writes a response with a content type and length.
func WriteBody(w http.ResponseWriter, mediaType string, code int, body []byte) {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}
