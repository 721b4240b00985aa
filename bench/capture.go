package bench

import (
	"bufio"
	"os"
	"time"

	"github.com/tailsift/tailsift/bench/workload"
)

// WriteCapture writes the scenario's load to path as OTLP protobuf (the
// requests concatenated, which protobuf reads as one merged request), for
// replaying through policies. It returns the number of spans written.
func WriteCapture(sc Scenario, path string) (int, error) {
	rate := sc.Rate
	if rate == 0 {
		rate = sc.MaxRateBudget
	}
	sched, err := workload.Build(sc.Workload, time.Now(), rate, sc.Duration)
	if err != nil {
		return 0, err
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, r := range sched.Requests {
		if _, err := w.Write(r.Body); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return sched.Spans, f.Close()
}
