// Package bench is Tailsift's load benchmark: it replays a pre-encoded,
// realistic workload (package workload) against sampler nodes and checks
// what they forward at a sink (package sink) against the manifest of every
// trace sent. Users size clusters with it; every performance claim of the
// project comes from it.
//
// Modes: in-process (Run with no Targets) starts the sink, N sampler nodes
// and the generator in this process and attributes CPU to each by pprof
// goroutine labels; external (Targets set) drives a deployment whose
// forward points at the sink. Sweep raises the offered rate step by step to
// find the highest rate sustained with complete kept traces.
//
// A run is not a test: it reports numbers, and says loudly when traces were
// lost (Result.Sink.Completeness below 1). Run is not safe for concurrent
// use (a process has one CPU profile).
package bench
