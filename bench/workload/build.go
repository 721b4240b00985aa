package workload

import (
	"encoding/binary"
	"math/rand/v2"
	"time"
)

// Request is one pre-encoded ExportTraceServiceRequest: one SDK batch.
type Request struct {
	At     time.Duration // when to send it, from the start of the run: the batch's flush time
	Conn   int           // which connection sends it
	Spans  int
	Traces []int32 // manifest indexes of the traces with spans in it, in order of first appearance in Body
	// Body is the protobuf ExportTraceServiceRequest. Bodies share memory
	// with each other: never modify one.
	Body []byte
}

// Schedule is everything a run sends, built before it starts.
type Schedule struct {
	Requests []Request // sorted by At
	Manifest *Manifest
	Spans    int
	Bytes    int     // total body bytes
	Rate     float64 // spans/s it was built for
	// Duration is the period traces start in, [0, Duration); the last
	// requests go out up to about the longest trace plus two BatchTimeouts
	// later (see End).
	Duration time.Duration
	Start    time.Time // wall-clock start of the run: span times are Start + offsets
	Config   Config    // the configuration it was built with
}

// End returns when the last request is due, from the start of the run.
func (s *Schedule) End() time.Duration {
	if len(s.Requests) == 0 {
		return 0
	}
	return s.Requests[len(s.Requests)-1].At
}

// MaxScheduleSpans bounds the spans of one schedule: it is held in memory,
// about approxSpanBytes per span.
const MaxScheduleSpans = 64 << 20

// Seeds of the two random streams: traffic, and the catalog (service
// instances, code locations), which does not depend on the rate.
const (
	streamTraffic = 0x7461696c73696674 // "tailsift"
	streamCatalog = 0x636174616c6f6721 // "catalog!"
)

// Build generates the traces of a run and pre-encodes every request.
//
// Traces start as a Poisson process (exponential gaps) at spansPerSecond /
// (mean spans per trace, large traces included) traces per second during
// [0, duration). start is the wall-clock time the run will start: span
// timestamps are start + offsets. Build is pure: the same arguments give a
// byte-identical Schedule.
func Build(cfg Config, start time.Time, spansPerSecond float64, duration time.Duration) (*Schedule, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := validateRun(start, spansPerSecond, duration); err != nil {
		return nil, err
	}
	b := newBuilder(cfg, start, spansPerSecond, duration)
	b.run()
	return b.sched, nil
}

// builder holds the state of one Build.
type builder struct {
	cfg      Config
	rng      *rand.Rand
	cat      *catalog
	shaper   *shaper
	tl       *timeline
	enc      encoder
	base     uint64 // start in Unix ns
	perNs    float64
	traces   []traceState // by manifest index
	manifest *Manifest
	sched    *Schedule
}

func newBuilder(cfg Config, start time.Time, spansPerSecond float64, duration time.Duration) *builder {
	tracesPerSec := spansPerSecond / cfg.meanSpans()
	expected := int(tracesPerSec*duration.Seconds()*1.02) + 64
	b := &builder{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(cfg.Seed, streamTraffic)),
		cat:      newCatalog(cfg.Services, rand.New(rand.NewPCG(cfg.Seed, streamCatalog))),
		enc:      *newEncoder(cfg.Services, cfg.BodyMemory),
		base:     uint64(start.UnixNano()),
		perNs:    tracesPerSec / 1e9,
		traces:   make([]traceState, 0, expected),
		manifest: NewManifest(expected),
	}
	b.shaper = newShaper(&b.cfg, b.cat, b.rng)
	b.tl = newTimeline(b)
	b.sched = &Schedule{
		Manifest: b.manifest, Rate: spansPerSecond, Duration: duration, Start: start, Config: cfg,
		Requests: make([]Request, 0, int(spansPerSecond*duration.Seconds())/cfg.BatchSpans+64),
	}
	return b
}

func (b *builder) run() {
	end := float64(b.sched.Duration)
	for t := b.rng.ExpFloat64() / b.perNs; t < end; t += b.rng.ExpFloat64() / b.perNs {
		t0 := int64(t)
		b.tl.advance(t0)
		sh := b.shaper.next()
		idx := b.manifest.Add(Trace{
			ID:        b.traceID(),
			Spans:     int32(len(b.shaper.recs)),
			Error:     sh.err,
			Duration:  time.Duration(sh.duration),
			EndOffset: time.Duration(t0 + sh.duration),
		})
		b.traces = append(b.traces, traceState{user: sh.user, rootConn: int32(sh.rootSvc % b.cfg.Connections)})
		recs := b.shaper.recs
		for i := range recs {
			recs[i].trace = idx
			recs[i].start += t0
			recs[i].end += t0
		}
		b.tl.pushTrace(recs)
	}
	b.tl.finish()
}

// traceID draws a random, non-zero trace ID not used before in the run
// (all 16 bytes uniform: samplers take their randomness from the low 7).
func (b *builder) traceID() [16]byte {
	for {
		var id [16]byte
		binary.BigEndian.PutUint64(id[:8], b.rng.Uint64())
		binary.BigEndian.PutUint64(id[8:], b.rng.Uint64())
		if id == ([16]byte{}) {
			continue
		}
		if _, dup := b.manifest.Lookup(id); !dup {
			return id
		}
	}
}
