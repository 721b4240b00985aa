package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SweepConfig raises the offered rate step by step.
type SweepConfig struct {
	Start        float64       // first rate, spans/s
	Factor       float64       // each step offers Factor times the last
	MaxSteps     int           // stop after this many steps
	StepDuration time.Duration // how long each step sends
	MaxP99       time.Duration // ingest p99 above this fails a step
	MinAchieved  float64       // achieved/offered below this fails a step (the engine fell behind)
}

// DefaultSweep starts at 10k spans/s and grows by half each step.
func DefaultSweep() SweepConfig {
	return SweepConfig{Start: 10_000, Factor: 1.5, MaxSteps: 12, StepDuration: 15 * time.Second,
		MaxP99: 50 * time.Millisecond, MinAchieved: 0.97}
}

// Validate reports every problem, naming the flag.
func (c SweepConfig) Validate() error {
	var errs []error
	if c.Start <= 0 {
		errs = append(errs, fmt.Errorf("--sweep-start must be positive, got %v", c.Start))
	}
	if c.Factor <= 1 {
		errs = append(errs, fmt.Errorf("--sweep-factor must be above 1, got %v", c.Factor))
	}
	if c.MaxSteps < 1 {
		errs = append(errs, fmt.Errorf("--sweep-steps must be at least 1, got %d", c.MaxSteps))
	}
	if c.StepDuration <= 0 {
		errs = append(errs, fmt.Errorf("--duration (per sweep step) must be positive, got %v", c.StepDuration))
	}
	if c.MaxP99 <= 0 {
		errs = append(errs, fmt.Errorf("--sweep-max-p99 must be positive, got %v", c.MaxP99))
	}
	return errors.Join(errs...)
}

// Step is one rate of a sweep.
type Step struct {
	Rate   float64 `json:"offered_spans_per_s"`
	Passed bool    `json:"passed"`
	Why    string  `json:"why,omitempty"` // the first failed criterion
	Result *Result `json:"result"`
}

// SweepResult is the outcome: the highest offered rate that passed.
type SweepResult struct {
	Config SweepConfig `json:"config"`
	Steps  []Step      `json:"steps"`
	Best   *Step       `json:"best,omitempty"`
}

// Judge tells whether a run sustained its offered rate: every kept trace
// complete, nothing unexpected or duplicated, nothing refused in the end,
// the offered rate achieved, ingest p99 bounded, and the engine's
// accounting exact.
func Judge(r *Result, c SweepConfig) (bool, string) {
	s := r.Sink
	switch {
	case s.Fragmented > 0 || s.Duplicated > 0 || s.Unexpected > 0 || s.UnexpectedSpans > 0:
		return false, fmt.Sprintf("kept traces not intact: %d fragmented, %d duplicated, %d unexpected traces, %d unexpected spans",
			s.Fragmented, s.Duplicated, s.Unexpected, s.UnexpectedSpans)
	case r.SpansRefused > 0:
		return false, fmt.Sprintf("%d spans refused after retries", r.SpansRefused)
	case r.WindowOffered > 0 && r.AchievedRate < c.MinAchieved*r.WindowOffered:
		return false, fmt.Sprintf("achieved %.0f of %.0f spans/s offered", r.AchievedRate, r.WindowOffered)
	case r.Ingest.P99 > c.MaxP99:
		return false, fmt.Sprintf("ingest p99 %v above %v", r.Ingest.P99, c.MaxP99)
	case r.Engine != nil && !r.Engine.AccountingOK:
		return false, "engine accounting does not add up"
	}
	return true, ""
}

// Sweep runs sc at rising rates until a step fails or MaxSteps ran. Each
// step starts fresh nodes and a fresh sink. onStep, if set, is called after
// each step.
func Sweep(ctx context.Context, sc Scenario, c SweepConfig, onStep func(Step)) (*SweepResult, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	out := &SweepResult{Config: c}
	rate := c.Start
	for range c.MaxSteps {
		step := sc
		step.Rate, step.Duration = rate, c.StepDuration
		r, err := Run(ctx, step)
		if err != nil {
			return out, err
		}
		ok, why := Judge(r, c)
		st := Step{Rate: rate, Passed: ok, Why: why, Result: r}
		out.Steps = append(out.Steps, st)
		if onStep != nil {
			onStep(st)
		}
		if !ok {
			break
		}
		out.Best = &out.Steps[len(out.Steps)-1]
		rate *= c.Factor
	}
	return out, nil
}
