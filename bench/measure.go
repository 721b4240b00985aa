package bench

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/pprof/profile"
)

// Components of an in-process run, as pprof goroutine labels. Goroutines
// inherit their creator's labels, so starting each component under its
// label attributes all its work (server connections, workers) to it.
const (
	componentEngine    = "engine"
	componentGenerator = "generator"
	componentSink      = "sink"
)

func withComponent(name string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("component", name), func(context.Context) { f() })
}

// CPU is CPU time by component over a run, from a CPU profile (100 Hz
// samples). Runtime work on no component's goroutine (background GC,
// scheduler) is Unattributed.
type CPU struct {
	Engine       time.Duration `json:"engine_ns"`
	Generator    time.Duration `json:"generator_ns"`
	Sink         time.Duration `json:"sink_ns"`
	Unattributed time.Duration `json:"unattributed_ns"`
}

// EngineUpperBound is the engine's CPU counting all unattributed runtime
// work (mostly garbage collection) as the engine's: the conservative figure
// for spans per core.
func (c CPU) EngineUpperBound() time.Duration { return c.Engine + c.Unattributed }

type cpuProfile struct{ buf bytes.Buffer }

func startCPUProfile() (*cpuProfile, error) {
	p := &cpuProfile{}
	if err := pprof.StartCPUProfile(&p.buf); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *cpuProfile) stop(path string) (CPU, error) {
	pprof.StopCPUProfile()
	if path != "" {
		if err := os.WriteFile(path, p.buf.Bytes(), 0o644); err != nil {
			return CPU{}, err
		}
	}
	prof, err := profile.Parse(&p.buf)
	if err != nil {
		return CPU{}, err
	}
	nanos := -1
	for i, st := range prof.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			nanos = i
		}
	}
	var c CPU
	if nanos < 0 {
		return c, nil
	}
	for _, s := range prof.Sample {
		d := time.Duration(s.Value[nanos])
		switch comp := s.Label["component"]; {
		case len(comp) == 0:
			c.Unattributed += d
		case comp[0] == componentEngine:
			c.Engine += d
		case comp[0] == componentGenerator:
			c.Generator += d
		case comp[0] == componentSink:
			c.Sink += d
		default:
			c.Unattributed += d
		}
	}
	return c, nil
}

// Sample is the state of the run at one moment, for the time series.
type Sample struct {
	At            time.Duration `json:"at_ns"`
	SpansSent     int64         `json:"spans_sent"`     // accepted by the engine so far
	SpansKept     int64         `json:"spans_kept"`     // arrived at the sink so far
	BufferedSpans int64         `json:"buffered_spans"` // all nodes
	BufferBytes   int64         `json:"buffer_bytes"`
	SpilledBytes  int64         `json:"spilled_bytes,omitempty"` // span bytes on disk, all nodes
	HeapBytes     uint64        `json:"heap_bytes"`
	RSSBytes      uint64        `json:"rss_bytes"`
}

// sampler records samples every interval until stopped.
type sampler struct {
	mu      sync.Mutex
	samples []Sample
	stop    chan struct{}
	done    chan struct{}
}

func startSampler(start time.Time, interval time.Duration, read func(*Sample)) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			smp := Sample{At: time.Since(start)}
			read(&smp)
			s.mu.Lock()
			s.samples = append(s.samples, smp)
			s.mu.Unlock()
			select {
			case <-t.C:
			case <-s.stop:
				return
			}
		}
	}()
	return s
}

func (s *sampler) finish() []Sample {
	close(s.stop)
	<-s.done
	return s.samples
}

// memory reads the process's heap (bytes in live and unswept objects) and
// resident set.
func memory() (heap, rss uint64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, residentBytes()
}

// residentBytes reads VmRSS from /proc (0 where there is no /proc).
func residentBytes() uint64 { return procStatusBytes("VmRSS:") }

// peakResidentBytes reads VmHWM, the peak resident set.
func peakResidentBytes() uint64 { return procStatusBytes("VmHWM:") }

func procStatusBytes(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
