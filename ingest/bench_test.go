package ingest_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/ingest"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

// discard is a Consumer that takes every request and keeps nothing, so
// that a benchmark measures the receivers alone.
type discard struct{}

func (discard) Consume(context.Context, *otlpwire.Request) error { return nil }

// BenchmarkExport is one OTLP request, end to end over loopback, through
// a real receiver to a consumer that keeps nothing: the transport, the
// in-flight accounting and the scan. Client and server share the process,
// so the allocations are both sides'; they do not grow with the spans
// (compare the two sizes). One request at a time, so that a change of a
// few hundred nanoseconds per request shows.
func BenchmarkExport(b *testing.B) {
	cfg := ingest.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	recv, err := ingest.New(cfg, discard{}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Shutdown(context.Background())
	cc, err := grpc.NewClient(recv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	url := "http://" + recv.HTTPAddr().String() + "/v1/traces"

	for _, traces := range []int{5, 50} {
		batch := otlptest.DefaultBatch()
		batch.Traces = traces
		body, err := proto.Marshal(batch.Request(rand.New(rand.NewPCG(1, 2))))
		if err != nil {
			b.Fatal(err)
		}
		name := map[int]string{5: "50spans", 50: "500spans"}[traces]
		b.Run("grpc/"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			var resp []byte
			for b.Loop() {
				if err := cc.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
					&body, &resp, grpc.ForceCodecV2(rawcodec.Codec{})); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("http/"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-protobuf")
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
