package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/bench"
	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/metricstest"
)

// Overload: a sampler whose buffer (16 MiB, no data directory) holds
// about 36k spans (~456 B accounted per span) and decides traces after
// 6 s sustains about 6k spans/s. TestOverloadProcess offers three times
// that for 15 s, with stress relief off and on. Either way the process
// stays up within its memory, every acknowledged span is accounted for
// (sent or dropped), and kept traces arrive whole. Without stress relief,
// clients are told to retry (RESOURCE_EXHAUSTED); with it (the default),
// the oldest traces are decided early, clients are served, and every
// error trace is kept whole.
func TestOverloadProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and overloads it")
	}
	bin := buildSampler(t)
	for _, relief := range []bool{false, true} {
		t.Run(map[bool]string{false: "retry-later", true: "stress-relief"}[relief], func(t *testing.T) {
			res, g, peak := overload(t, bin, relief)
			overloaded := metricstest.Value(t, g, "tailsift_ingest_spans_refused_total", map[string]string{"protocol": "grpc", "reason": "overloaded"})
			relieved := metricstest.Value(t, g, "tailsift_decision_stress_relief_traces_total", nil)
			t.Logf("refused as overloaded: %.0f spans (%d client retries, %d spans given up); stress relief decided %.0f traces; peak RssAnon %d MiB, buffer %d MiB",
				overloaded, res.Retries, res.SpansRefused, relieved, peak.anon>>20, peak.memory>>20)
			if relief {
				if relieved == 0 {
					t.Errorf("stress relief decided no trace under 3x overload")
				}
			} else {
				if overloaded == 0 || res.Retries == 0 {
					t.Errorf("under 3x overload without stress relief, %0.f spans refused and %d retries: want retryable errors", overloaded, res.Retries)
				}
				if relieved != 0 {
					t.Errorf("stress relief off, but %.0f traces relieved", relieved)
				}
			}
			if peak.memory > 16<<20 {
				t.Errorf("the buffer accounted %d MiB, over its 16 MiB limit", peak.memory>>20)
			}
			if peak.anon == 0 || peak.anon > spillAnonBound {
				t.Errorf("peak anonymous resident memory %d MiB, want at most %d MiB", peak.anon>>20, spillAnonBound>>20)
			}
			// No acknowledged span lost: the sampler accounts for every span
			// the generator had acknowledged, and sent all it kept.
			if e := res.Engine; e == nil || !e.AccountingOK || e.Stats.Accepted != res.SpansSent {
				t.Errorf("accounting does not add up: %+v (generator had %d spans acknowledged)", res.Engine, res.SpansSent)
			}
			s := res.Sink
			if s.Completeness() != 1 || s.Duplicated != 0 || s.Unexpected != 0 {
				t.Errorf("kept traces not intact: completeness %.4f, fragmented %d, duplicated %d, unexpected %d",
					s.Completeness(), s.Fragmented, s.Duplicated, s.Unexpected)
			}
			errs := s.Classes[workload.ClassError]
			if !relief {
				// Refused requests come back seconds later, so spans of one
				// trace arrive further apart than the decision wait: some
				// error traces are decided before their error span arrives,
				// and the late span follows the drop. Not lost (counted as
				// dropped late), but not kept either: stress relief is the
				// default for this reason.
				t.Logf("without stress relief, %d of %d delivered error traces kept whole", errs.Complete, errs.Sent)
				return
			}
			if errs.Sent == 0 || errs.Complete != errs.Sent {
				t.Errorf("error traces kept whole: %d of %d delivered, want all", errs.Complete, errs.Sent)
			}
		})
	}
}

// overload runs one sampler under 3x its sustainable load and returns the
// bench result, the sampler's metrics after the drain and the peaks seen.
func overload(t *testing.T, bin string, relief bool) (*bench.Result, prometheus.Gatherer, spillPeaks) {
	t.Helper()
	grpcAddr, admin, sinkAddr := freePort(t), freePort(t), freePort(t)
	p := startMemProc(t, bin, admin, "--otlp-grpc", grpcAddr, "--forward", sinkAddr,
		"--memory-limit", "16MiB", "--decision-wait", "6s", "--root-wait", "6s",
		"--stress-relief="+strconv.FormatBool(relief))
	stop := p.watch()
	res := benchJSON(t, bin, 120*time.Second,
		"--target", grpcAddr, "--target-admin", admin, "--sink-listen", sinkAddr,
		"--rate", "18000", "--duration", "15s", "--seed", "5", "--quiet", "10s", "--drain", "60s")
	peak := stop()
	g, err := scrapeMetrics(p.hc, admin)
	if err != nil {
		t.Fatal(err)
	}
	return res, g, peak
}
