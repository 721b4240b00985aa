package sink

import (
	"context"
	"net"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

const slow = 100 * time.Millisecond

// TestClassification sends hand-built requests over real gRPC and HTTP and
// checks every count of the report.
func TestClassification(t *testing.T) {
	s := startSink(t)
	gc, _ := grpcClient(t, s)
	hc := httpClient(t)

	var (
		errComplete   = traceID(1)
		errFragmented = traceID(2)
		errDropped    = traceID(3)
		slowDup       = traceID(4)
		slowForeign   = traceID(5) // complete, plus spans with foreign IDs
		slowUndeliv   = traceID(6)
		restComplete  = traceID(7)
		restDropped   = traceID(8)
		restFragment  = traceID(9)
		unexpected    = traceID(10)
	)
	m := workload.NewManifest(9)
	m.Add(workload.Trace{ID: errComplete, Spans: 3, Error: true, Duration: time.Millisecond})
	m.Add(workload.Trace{ID: errFragmented, Spans: 4, Error: true, Duration: time.Second})
	m.Add(workload.Trace{ID: errDropped, Spans: 2, Error: true})
	m.Add(workload.Trace{ID: slowDup, Spans: 3, Duration: 2 * slow})
	m.Add(workload.Trace{ID: slowForeign, Spans: 2, Duration: slow})
	m.Add(workload.Trace{ID: slowUndeliv, Spans: 2, Duration: slow})
	m.Add(workload.Trace{ID: restComplete, Spans: 1, Duration: slow - 1})
	m.Add(workload.Trace{ID: restDropped, Spans: 3})
	m.Add(workload.Trace{ID: restFragment, Spans: 5})
	tr, _ := m.Lookup(slowUndeliv)
	tr.Undelivered.Store(true)

	s.Expect(m, time.Now())
	sendGRPC(t, gc, request(
		spans(errComplete, 0, 1, 2),
		spans(slowDup, 0, 1),
		spans(restComplete, 0),
		spans(unexpected, 0, 1),
	))
	foreignPrefix := workload.SpanID(unexpected, 0) // right index, wrong trace prefix
	sendHTTP(t, hc, s, request(
		spans(errFragmented, 0, 1, 3),
		spans(slowDup, 1, 2),        // span 1 the second time
		spans(slowForeign, 0, 1, 2), // span 2 is out of range: Spans is 2
		[]*tracepb.Span{spanWithID(slowForeign, foreignPrefix)},
		spans(slowUndeliv, 0),
	), false)
	sendHTTP(t, hc, s, request(spans(restFragment, 0, 2, 4)), true)

	got := s.Report(slow)
	want := Report{
		SlowThreshold:  slow,
		ManifestTraces: 9,
		Classes: [workload.NumClasses]ClassReport{
			{Class: "error", Sent: 3, Kept: 2, Complete: 1, Fragmented: 1, Dropped: 1, KeepShare: 1.0 / 3,
				Missed: hexIDs(errFragmented, errDropped)},
			{Class: "slow", Sent: 2, Kept: 2, Complete: 1, Duplicated: 1, KeepShare: 0.5, Missed: hexIDs(slowDup)},
			{Class: "rest", Sent: 3, Kept: 2, Complete: 1, Fragmented: 1, Dropped: 1, KeepShare: 1.0 / 3,
				Missed: hexIDs(restDropped, restFragment)},
		},
		Sent: 8, Kept: 6, Complete: 3, Fragmented: 2, Duplicated: 1, Dropped: 2,
		Undelivered:     1,
		Unexpected:      1,
		UnexpectedSpans: 2 + 2,
		DuplicateSpans:  1,
		SpansReceived:   8 + 10 + 3,
		Requests:        3,
	}
	// Delays depend on the clock: check their shape, then compare the rest.
	if got.Delay.Count != 3 || got.Delay.Max < got.Delay.P50 {
		t.Errorf("Delay = %+v, want 3 complete traces", got.Delay)
	}
	got.Delay = DelayStats{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("report:\n got %+v\nwant %+v", got, want)
	}
	if c := got.Completeness(); c != 0.5 {
		t.Errorf("Completeness = %v, want 0.5", c)
	}
	if p := got.Problems(); len(p) != 4 { // fragmented, duplicated, unexpected traces, unexpected spans
		t.Errorf("Problems = %q, want 4", p)
	}

	// Expect forgets everything.
	m2 := workload.NewManifest(1)
	m2.Add(workload.Trace{ID: errComplete, Spans: 3, Error: true})
	s.Expect(m2, time.Now())
	if p := s.Progress(); p != (Progress{}) {
		t.Errorf("Progress after Expect = %+v, want zero", p)
	}
	r := s.Report(slow)
	if r.Sent != 1 || r.Kept != 0 || r.Dropped != 1 || r.SpansReceived != 0 || r.Requests != 0 || r.Unexpected != 0 || r.Completeness() != 1 {
		t.Errorf("report after Expect = %+v", r)
	}
	sendGRPC(t, gc, request(spans(errComplete, 0, 1, 2)))
	if r := s.Report(slow); r.Complete != 1 || r.Classes[workload.ClassError].KeepShare != 1 || r.SpansReceived != 3 {
		t.Errorf("report of the new measurement = %+v", r)
	}
}

// TestDelay checks end-to-end delays: arrival of a trace's last span minus
// runStart + EndOffset.
func TestDelay(t *testing.T) {
	s := startSink(t)
	gc, _ := grpcClient(t, s)
	a, b, c := traceID(1), traceID(2), traceID(3)
	m := workload.NewManifest(3)
	m.Add(workload.Trace{ID: a, Spans: 2, EndOffset: 5 * time.Second})
	m.Add(workload.Trace{ID: b, Spans: 2, EndOffset: 5 * time.Second})
	m.Add(workload.Trace{ID: c, Spans: 1, EndOffset: 8 * time.Second})
	runStart := time.Now().Add(-10 * time.Second)
	s.Expect(m, runStart)

	before := time.Now()
	sendGRPC(t, gc, request(spans(a, 0)))
	time.Sleep(2 * time.Millisecond)
	sendGRPC(t, gc, request(spans(b, 0, 1), spans(c, 0)))
	time.Sleep(2 * time.Millisecond)
	sendGRPC(t, gc, request(spans(a, 1))) // a's last span arrives last
	after := time.Now()

	ms := s.cur.Load()
	delay := func(id [16]byte) time.Duration {
		tr, _ := m.Lookup(id)
		return ms.recs[id].last - tr.EndOffset
	}
	da, db, dc := delay(a), delay(b), delay(c)
	for _, d := range []struct {
		name string
		got  time.Duration
		end  time.Duration
	}{{"a", da, 5 * time.Second}, {"b", db, 5 * time.Second}, {"c", dc, 8 * time.Second}} {
		lo, hi := before.Sub(runStart)-d.end, after.Sub(runStart)-d.end
		if d.got < lo || d.got > hi || d.got <= 0 {
			t.Errorf("delay of %s = %v, want in [%v, %v]", d.name, d.got, lo, hi)
		}
	}
	if !(da > db) {
		t.Errorf("delay of a (%v) <= delay of b (%v), but a's last span arrived later", da, db)
	}
	if db-dc != 3*time.Second {
		t.Errorf("b and c arrived together, ending 3s apart: delays %v and %v", db, dc)
	}

	r := s.Report(slow)
	d := r.Delay
	if d.Count != 3 || d.P50 != db || d.Max != da {
		t.Errorf("Delay = %+v, want 3 traces, p50 %v (b), max %v (a)", d, db, da)
	}
	if !(0 < d.P50 && d.P50 <= d.P90 && d.P90 <= d.P99 && d.P99 <= d.Max) {
		t.Errorf("Delay percentiles out of order: %+v", d)
	}
}

// TestProgress counts requests and spans, before and after Expect.
func TestProgress(t *testing.T) {
	s := startSink(t)
	gc, _ := grpcClient(t, s)
	hc := httpClient(t)
	if p := s.Progress(); p != (Progress{}) {
		t.Fatalf("Progress of a new sink = %+v", p)
	}
	// Before Expect: counted, no trace state.
	sendGRPC(t, gc, request(spans(traceID(1), 0, 1, 2)))
	if p := s.Progress(); p.Spans != 3 || p.Requests != 1 {
		t.Errorf("Progress before Expect = %+v", p)
	}
	if r := s.Report(slow); r.SpansReceived != 3 || r.Requests != 1 || r.Unexpected != 0 || r.ManifestTraces != 0 {
		t.Errorf("Report before Expect = %+v", r)
	}

	m := workload.NewManifest(1)
	m.Add(workload.Trace{ID: traceID(1), Spans: 3})
	s.Expect(m, time.Now())
	before := time.Now()
	sendGRPC(t, gc, request(spans(traceID(1), 0)))
	sendHTTP(t, hc, s, request(spans(traceID(1), 1, 2)), false)
	sendHTTP(t, hc, s, request(), false) // empty requests count too
	after := time.Now()
	p := s.Progress()
	if p.Spans != 3 || p.Requests != 3 || p.MalformedRequests != 0 {
		t.Errorf("Progress = %+v, want 3 spans, 3 requests", p)
	}
	if p.LastArrival.Before(before) || p.LastArrival.After(after) {
		t.Errorf("LastArrival %v not in [%v, %v]", p.LastArrival, before, after)
	}
}

// TestMalformed refuses unreadable requests with InvalidArgument / 400 and
// counts them.
func TestMalformed(t *testing.T) {
	s := startSink(t)
	_, conn := grpcClient(t, s)
	hc := httpClient(t)
	m := workload.NewManifest(1)
	m.Add(workload.Trace{ID: traceID(1), Spans: 1})
	s.Expect(m, time.Now())

	truncated := []byte{0x0a, 0x05, 0x01} // resource_spans of 5 bytes, 1 present
	zeroTrace := marshal(t, request(spans([16]byte{}, 0)))

	for _, body := range [][]byte{truncated, zeroTrace} {
		code, out := post(t, hc, s, contentProtobuf, "", body)
		if code != http.StatusBadRequest {
			t.Errorf("POST malformed = %d, want 400", code)
		}
		var st spb.Status
		if err := proto.Unmarshal(out, &st); err != nil || codes.Code(st.Code) != codes.InvalidArgument || st.Message == "" {
			t.Errorf("400 body = %v (%v), want a google.rpc.Status InvalidArgument", &st, err)
		}
	}
	if code, _ := post(t, hc, s, "application/json", "", []byte("{}")); code != http.StatusUnsupportedMediaType {
		t.Errorf("POST JSON = %d, want 415", code)
	}
	if code, _ := post(t, hc, s, contentProtobuf, "gzip", truncated); code != http.StatusBadRequest {
		t.Errorf("POST bad gzip = %d, want 400", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var reply []byte
	err := conn.Invoke(ctx, exportMethod, &truncated, &reply, grpc.ForceCodecV2(rawcodec.Codec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC malformed: %v, want InvalidArgument", err)
	}

	p := s.Progress()
	if p.MalformedRequests != 5 || p.Requests != 0 || p.Spans != 0 {
		t.Errorf("Progress = %+v, want 5 malformed, nothing recorded", p)
	}
	if r := s.Report(slow); r.MalformedRequests != 5 || r.Kept != 0 || len(r.Problems()) != 1 {
		t.Errorf("Report = %+v, problems %q", r, r.Problems())
	}
	if code, _ := post(t, hc, s, contentProtobuf, "", marshal(t, request(spans(traceID(1), 0)))); code != http.StatusOK {
		t.Errorf("a good request after bad ones = %d", code)
	}
	resp, err := hc.Get("http://" + s.HTTPAddr().String() + "/v1/traces")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET = %d, want 405", resp.StatusCode)
	}
}

func TestStartAndShutdown(t *testing.T) {
	if _, err := Start(Config{}); err == nil {
		t.Error("Start with no address succeeded")
	}
	if _, err := Start(Config{GRPCAddr: "127.0.0.1:0", MaxRequestBytes: -1}); err == nil {
		t.Error("Start with MaxRequestBytes -1 succeeded")
	}
	if _, err := Start(Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "256.0.0.1:0"}); err == nil {
		t.Error("Start with a bad HTTP address succeeded")
	}

	s, err := Start(Config{HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if s.GRPCAddr() != nil || s.HTTPAddr() == nil {
		t.Errorf("addresses = %v, %v; want nil and set", s.GRPCAddr(), s.HTTPAddr())
	}
	for range 2 {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}

	s, err = Start(Config{GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if s.GRPCAddr() == nil || s.HTTPAddr() != nil {
		t.Errorf("addresses = %v, %v; want set and nil", s.GRPCAddr(), s.HTTPAddr())
	}
	gc, _ := grpcClient(t, s)
	sendGRPC(t, gc, request(spans(traceID(1), 0)))
	for range 2 {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}
}

// TestRecordDoesNotAllocate guards the hot path: scanning and recording a
// request of already-known traces allocates nothing.
func TestRecordDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	reqs, m := realisticRequests(t, 1)
	s := &Sink{}
	s.reqs.New = func() any { return new(otlpwire.Request) }
	s.cur.Store(newMeasurement(m, time.Now()))
	if err := s.consume(reqs[0]); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := s.consume(reqs[0]); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("consume allocates %v times per request, want 0", n)
	}
	r := s.Report(slow)
	if r.Complete != 0 || r.Duplicated != 50 || r.DuplicateSpans != 101*500 || r.UnexpectedSpans != 0 {
		t.Errorf("report = %+v", r)
	}
}

// TestConcurrent records from several clients at once, some compressing
// with gzip, while Progress and Report read: for the race detector, and
// the counts must still add up.
func TestConcurrent(t *testing.T) {
	s := startSink(t)
	gc, _ := grpcClient(t, s)
	hc := httpClient(t)
	const senders, traces, spansPer = 4, 30, 5
	m := workload.NewManifest(senders * traces)
	for g := range senders {
		for i := range traces {
			m.Add(workload.Trace{ID: traceID(byte(g*traces + i + 1)), Spans: spansPer})
		}
	}
	s.Expect(m, time.Now())

	// The bound only ends a hung test: the requests race Report under the
	// race detector, which on a busy machine took over 10s.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range traces {
				id := traceID(byte(g*traces + i + 1))
				// Each trace in two requests: spans 0-1, then 2-4.
				for _, idx := range [][]int{{0, 1}, {2, 3, 4}} {
					req := request(spans(id, idx...))
					switch g % 3 {
					case 0:
						if _, err := gc.Export(ctx, req); err != nil {
							t.Error(err)
							return
						}
					case 1:
						if _, err := gc.Export(ctx, req, grpc.UseCompressor(gzip.Name)); err != nil {
							t.Error(err)
							return
						}
					default:
						if err := exportHTTP(hc, s, req, i%2 == 0); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}
		})
	}
	wg.Go(func() {
		for ctx.Err() == nil && s.Progress().Requests < senders*traces*2 {
			_ = s.Report(slow)
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()

	r := s.Report(slow)
	if r.Complete != senders*traces || r.Kept != r.Complete || r.SpansReceived != senders*traces*spansPer ||
		r.Requests != senders*traces*2 || r.Problems() != nil || r.Delay.Count != senders*traces {
		t.Errorf("report = %+v, problems %q", r, r.Problems())
	}
}

// TestAbandonedUpload: a gRPC client that dies mid-upload (its connection
// closes with part of the body sent, as when an exporter is killed) left
// a request that is not malformed: the sink must not report it as one.
func TestAbandonedUpload(t *testing.T) {
	s := startSink(t)
	dialed := make(chan *otlptest.StallingConn, 1)
	conn, err := grpc.NewClient(s.GRPCAddr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			sc := otlptest.NewStallingConn(c, 32<<10) // the preface, the headers and part of the body
			dialed <- sc
			return sc, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := make([]byte, 1<<20)
	done := make(chan error, 1)
	go func() {
		var reply []byte
		done <- conn.Invoke(context.Background(), exportMethod, &body, &reply, grpc.ForceCodecV2(rawcodec.Codec{}))
	}()
	var sc *otlptest.StallingConn
	select {
	case sc = <-dialed:
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not dial within 10s")
	}
	select {
	case <-sc.Stalled():
	case err := <-done:
		t.Fatalf("the upload finished before it stalled: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the upload did not stall within 10s")
	}
	sc.Close()
	if err := <-done; err == nil {
		t.Fatal("an upload cut short succeeded")
	}

	// Shutdown waits for the server's handlers: the cut request is counted.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if p := s.Progress(); p.MalformedRequests != 0 || p.AbandonedRequests != 1 {
		t.Errorf("Progress = %+v, want 1 abandoned request and none malformed", p)
	}
}
