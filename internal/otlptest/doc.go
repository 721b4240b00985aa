// Package otlptest builds OTLP trace requests for tests and benchmarks:
// random ones that exercise every field (property and fuzz tests), and
// realistic batches shaped like an SDK batch processor's output (benchmarks).
//
// It is imported only by tests and benchmarks. Every generator takes its own
// *rand.Rand, so results are reproducible from a seed.
package otlptest
