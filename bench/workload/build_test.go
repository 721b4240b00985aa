package workload

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBuildSchedule reads a default schedule back and checks structure,
// the arrival model (children first, root last, batches) and the mix.
func TestBuildSchedule(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed = 7
	s := build(t, cfg, 20000, 3*time.Second)
	d := checkSchedule(t, s)
	if len(d.conns) != cfg.Connections {
		t.Errorf("%d of %d connections used", len(d.conns), cfg.Connections)
	}

	// Traces are spread over requests and requests mix traces.
	spread, multi, services := 0, 0, 0
	for ti := range s.Manifest.Traces {
		reqs := map[int]bool{}
		svcs := map[string]bool{}
		for _, sp := range d.spans[ti] {
			reqs[sp.req] = true
			svcs[sp.service] = true
		}
		if len(reqs) >= 2 {
			spread++
		}
		if len(svcs) >= 2 {
			multi++
		}
		services += len(svcs)
	}
	traces := len(s.Manifest.Traces)
	if share := float64(spread) / float64(traces); share < 0.5 {
		t.Errorf("%.1f%% of traces arrive in 2 or more requests, want most", 100*share)
	}
	if share := float64(multi) / float64(traces); share < 0.5 {
		t.Errorf("%.1f%% of traces span 2 or more services, want most", 100*share)
	}
	perReq := 0
	for _, r := range s.Requests {
		perReq += len(r.Traces)
	}
	if mean := float64(perReq) / float64(len(s.Requests)); mean < 10 {
		t.Errorf("requests carry %.1f traces on average, want at least 10", mean)
	}
	if mean := float64(d.attrs) / float64(s.Spans); mean < 7.5 || mean > 9 {
		t.Errorf("%.2f attributes per span, want about 8", mean)
	}
	t.Logf("%d traces, %d spans, %d requests (%.0f spans, %.1f traces each), %.0f bytes/span; %.0f%% of traces over 2+ requests, %.1f services per trace",
		traces, s.Spans, len(s.Requests), float64(s.Spans)/float64(len(s.Requests)), float64(perReq)/float64(len(s.Requests)),
		float64(s.Bytes)/float64(s.Spans), 100*float64(spread)/float64(traces), float64(services)/float64(traces))
}

// TestBuildEdges checks the structure under configurations at the edges
// of what Validate allows.
func TestBuildEdges(t *testing.T) {
	f := func(name string, rate float64, d time.Duration, mod func(*Config)) {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Seed = 3
			mod(&cfg)
			checkSchedule(t, build(t, cfg, rate, d))
		})
	}
	f("one service", 2000, time.Second, func(c *Config) { c.Services, c.Connections = 1, 1 })
	f("two spans", 2000, time.Second, func(c *Config) { c.MeanSpans, c.LargeShare = 2, 0 })
	f("flat", 2000, time.Second, func(c *Config) { c.MaxDepth = 2 })
	f("deep", 2000, time.Second, func(c *Config) { c.MaxDepth, c.MeanSpans = 64, 40 })
	f("batch of one", 500, time.Second, func(c *Config) { c.BatchSpans = 1 })
	f("tiny batches", 3000, time.Second, func(c *Config) { c.BatchSpans = 7; c.BatchTimeout = time.Millisecond })
	f("all large", 20000, time.Second, func(c *Config) { c.LargeShare, c.LargeMin, c.LargeMax = 1, 2000, 3000 })
	f("all errors, all slow", 2000, time.Second, func(c *Config) {
		c.ErrorShare, c.TailShare, c.TailMin = 1, 1, 100*time.Millisecond
	})
	f("short traces", 2000, time.Second, func(c *Config) { c.MedianDuration, c.TailMin = time.Millisecond, 2*time.Millisecond })
	f("many services and connections", 5000, time.Second, func(c *Config) { c.Services, c.Connections = 60, 60 })
	f("low rate", 50, 2*time.Second, func(c *Config) {})
}

// TestShares checks the statistical promises over many traces, each
// within 4.5 standard deviations.
func TestShares(t *testing.T) {
	f := func(name string, mod func(*Config)) {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Seed = 11
			mod(&cfg)
			rate := 40000 * cfg.meanSpans() // 40k traces per second
			s := build(t, cfg, rate, time.Second)
			tr := s.Manifest.Traces
			n := float64(len(tr))
			if n < 35000 {
				t.Fatalf("only %v traces", n)
			}
			share := func(what string, want float64, pred func(*Trace) bool) {
				t.Helper()
				k := 0
				for i := range tr {
					if pred(&tr[i]) {
						k++
					}
				}
				got, sigma := float64(k)/n, math.Sqrt(want*(1-want)/n)
				if math.Abs(got-want) > 4.5*sigma+1e-12 {
					t.Errorf("%s share %.5f, want %.5f ± %.5f", what, got, want, 4.5*sigma)
				}
			}
			share("error", cfg.ErrorShare, func(t *Trace) bool { return t.Error })
			share("tail", cfg.TailShare, func(t *Trace) bool { return t.Duration >= cfg.TailMin })
			share("large", cfg.LargeShare, func(t *Trace) bool { return int(t.Spans) >= cfg.LargeMin })

			// Mean spans of ordinary traces: 2 + geometric, variance mu(mu+1).
			var sum, k float64
			var body []time.Duration
			for i := range tr {
				if int(tr[i].Spans) < cfg.LargeMin {
					sum += float64(tr[i].Spans)
					k++
				}
				if tr[i].Duration < cfg.TailMin {
					body = append(body, tr[i].Duration)
				}
			}
			mu := float64(cfg.MeanSpans - 2)
			if got, sigma := sum/k, math.Sqrt(mu*(mu+1)/k); math.Abs(got-float64(cfg.MeanSpans)) > 4.5*sigma+0.01 {
				t.Errorf("ordinary traces have %.3f spans on average, want %d ± %.3f", got, cfg.MeanSpans, 4.5*sigma)
			}
			// Median of the log-normal body: in log space the sample median
			// has a standard deviation of about 1.2533·sigma/√n.
			slices.Sort(body)
			med := body[len(body)/2]
			if got, tol := math.Log(float64(med)/float64(cfg.MedianDuration)), 4.5*1.2533*bodySigma/math.Sqrt(float64(len(body))); math.Abs(got) > tol {
				t.Errorf("median duration %v, want %v within a factor e^%.3f", med, cfg.MedianDuration, tol)
			}
			for i := range tr {
				if tr[i].Duration >= cfg.TailMin && tr[i].Duration > 20*cfg.TailMin {
					t.Errorf("tail trace of %v: the tail should stay within a few TailMin", tr[i].Duration)
					break
				}
			}
		})
	}
	f("defaults", func(*Config) {})
	f("skewed", func(c *Config) {
		c.ErrorShare, c.TailShare, c.LargeShare, c.MeanSpans = 0.3, 0.2, 0.05, 4
		c.LargeMin, c.LargeMax = 20, 30
		c.MedianDuration, c.TailMin = 200*time.Millisecond, 300*time.Millisecond
	})
}

// TestRate checks that a schedule carries the spans per second asked for.
func TestRate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed = 5
	const rate, d = 50000.0, 10 * time.Second
	s := build(t, cfg, rate, d)
	// The span count is a compound Poisson sum: its variance is Σ spans².
	var sq float64
	for i := range s.Manifest.Traces {
		n := float64(s.Manifest.Traces[i].Spans)
		sq += n * n
	}
	want := rate * d.Seconds()
	if diff := math.Abs(float64(s.Spans) - want); diff > 4.5*math.Sqrt(sq) || diff > 0.05*want {
		t.Errorf("%d spans in %v: %.0f spans/s, want %.0f", s.Spans, d, float64(s.Spans)/d.Seconds(), rate)
	}
	if s.Rate != rate || s.Duration != d {
		t.Errorf("Schedule.Rate, Duration = %v, %v", s.Rate, s.Duration)
	}
	if end := s.End(); end < d || end > d+5*cfg.TailMin {
		t.Errorf("last request at %v for traces starting in [0, %v)", end, d)
	}
	t.Logf("%d spans, %.0f spans/s (%.2f%% off), %d traces", s.Spans, float64(s.Spans)/d.Seconds(),
		100*(float64(s.Spans)/want-1), len(s.Manifest.Traces))
}

func TestDeterministic(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed = 42
	a := build(t, cfg, 10000, 2*time.Second)
	b := build(t, cfg, 10000, 2*time.Second)
	if where, ok := sameSchedule(a, b); !ok {
		t.Fatalf("same seed, different schedules: %s", where)
	}
	cfg.Seed = 43
	c := build(t, cfg, 10000, 2*time.Second)
	if a.Manifest.Traces[0].ID == c.Manifest.Traces[0].ID {
		t.Fatal("another seed gave the same first trace")
	}
	if _, ok := sameSchedule(a, c); ok {
		t.Fatal("another seed gave the same schedule")
	}
}

// TestTraceIDs checks that trace IDs look uniformly random: every byte of
// the low 7 takes each bit value about half the time.
func TestTraceIDs(t *testing.T) {
	s := build(t, DefaultConfig(), 100000, time.Second)
	tr := s.Manifest.Traces
	n := float64(len(tr))
	for b := 9; b < 16; b++ {
		for bit := range 8 {
			k := 0
			for i := range tr {
				k += int(tr[i].ID[b] >> bit & 1)
			}
			if math.Abs(float64(k)/n-0.5) > 4.5*0.5/math.Sqrt(n) {
				t.Fatalf("byte %d bit %d set in %d of %v trace IDs", b, bit, k, n)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	f := func(want string, mod func(*Config)) {
		t.Helper()
		cfg := DefaultConfig()
		mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, want)
		}
		if _, err := Build(cfg, testStart, 1000, time.Second); err == nil {
			t.Errorf("Build accepted a config with a bad %s", want)
		}
	}
	f("--services", func(c *Config) { c.Services = 0 })
	f("--services", func(c *Config) { c.Services = maxServices + 1 })
	f("--spans", func(c *Config) { c.MeanSpans = 1 })
	f("--large-share", func(c *Config) { c.LargeShare = -0.1 })
	f("--large-share", func(c *Config) { c.LargeShare = math.NaN() })
	f("--large-min", func(c *Config) { c.LargeMin = 1 })
	f("--large-max", func(c *Config) { c.LargeMax = c.LargeMin - 1 })
	f("--large-max", func(c *Config) { c.LargeMax = MaxSpansPerTrace + 1 })
	f("--max-depth", func(c *Config) { c.MaxDepth = 1 })
	f("--error-share", func(c *Config) { c.ErrorShare = 1.5 })
	f("--median-duration", func(c *Config) { c.MedianDuration = 0 })
	f("--tail-share", func(c *Config) { c.TailShare = 2 })
	f("--tail-min", func(c *Config) { c.TailMin = c.MedianDuration })
	f("--batch-spans", func(c *Config) { c.BatchSpans = 0 })
	f("--batch-timeout", func(c *Config) { c.BatchTimeout = 0 })
	f("--connections", func(c *Config) { c.Connections = 0 })
	f("--connections", func(c *Config) { c.Connections = c.Services + 1 })

	// Every problem at once.
	cfg := DefaultConfig()
	cfg.Services, cfg.ErrorShare, cfg.BatchSpans = 0, -1, 0
	err := cfg.Validate()
	for _, flag := range []string{"--services", "--error-share", "--batch-spans"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("Validate() = %v, want it to name %s too", err, flag)
		}
	}

	g := func(want string, rate float64, d time.Duration) {
		t.Helper()
		if _, err := Build(DefaultConfig(), testStart, rate, d); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Build(rate %v, duration %v) = %v, want an error naming %s", rate, d, err, want)
		}
	}
	g("--rate", 0, time.Second)
	g("--rate", math.Inf(1), time.Second)
	g("--rate", math.NaN(), time.Second)
	g("--duration", 1000, 0)
	g("at most", 1e7, time.Hour)
}

// TestBuildAllocs guards the allocation budget of the request path: the
// catalog costs a fixed few thousand allocations, after that the slabs make
// most requests free. It measures the difference between a 2 s and a 1 s
// schedule, so the fixed part cancels out.
func TestBuildAllocs(t *testing.T) {
	cfg := DefaultConfig()
	run := func(d time.Duration) (allocs float64, s *Schedule) {
		allocs = testing.AllocsPerRun(1, func() { s = build(t, cfg, 100000, d) })
		return allocs, s
	}
	a1, s1 := run(time.Second)
	a2, s2 := run(2 * time.Second)
	spans, reqs := s2.Spans-s1.Spans, len(s2.Requests)-len(s1.Requests)
	perReq, perSpan := (a2-a1)/float64(reqs), (a2-a1)/float64(spans)
	if perReq > 2 || perSpan > 0.005 {
		t.Errorf("%.0f more allocations for %d more spans in %d more requests: %.2f per request, %.4f per span",
			a2-a1, spans, reqs, perReq, perSpan)
	}
	t.Logf("1 s: %.0f allocations (%d spans, %d requests); marginal: %.2f per request, %.4f per span",
		a1, s1.Spans, len(s1.Requests), perReq, perSpan)
}

// BenchmarkBuild builds one second of load at 100k spans/s.
func BenchmarkBuild(b *testing.B) {
	cfg := DefaultConfig()
	b.ReportAllocs()
	var spans, bytes int
	for b.Loop() {
		s := build(b, cfg, 100000, time.Second)
		spans += s.Spans
		bytes += s.Bytes
	}
	ns := float64(b.Elapsed().Nanoseconds())
	b.ReportMetric(ns/float64(spans), "ns/span")
	b.ReportMetric(float64(spans)/(ns/1e9), "spans/s")
	b.ReportMetric(float64(bytes)/float64(spans), "B/span")
}

// TestBodyMemory checks that bodies written to caller-supplied memory are
// the same bytes as bodies in the heap.
func TestBodyMemory(t *testing.T) {
	cfg := DefaultConfig()
	start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	want, err := Build(cfg, start, 20000, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	cfg.BodyMemory = func(n int) []byte { chunks++; return make([]byte, n) }
	got, err := Build(cfg, start, 20000, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if chunks == 0 {
		t.Fatal("BodyMemory was never called")
	}
	if len(got.Requests) != len(want.Requests) {
		t.Fatalf("%d requests, want %d", len(got.Requests), len(want.Requests))
	}
	for i := range want.Requests {
		if !bytes.Equal(got.Requests[i].Body, want.Requests[i].Body) {
			t.Fatalf("request %d differs", i)
		}
	}
}
