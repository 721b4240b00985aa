// Package decision decides buffered traces: it knows when a trace is ready,
// runs the policy set on it, hands kept traces to an exporter, and remembers
// recent decisions so that late spans follow them.
//
// Data path: Consume takes a scanned request, groups its spans by trace, and
// for each trace either follows a cached decision (late spans of kept traces
// go straight to the exporter, late spans of dropped traces are counted) or
// appends the spans to the buffer. One loop goroutine ticks every
// Config.Tick, takes the traces that are due from the buffer, evaluates them
// and records the decisions: no timer or goroutine per trace.
//
// Readiness: a trace is due at the earliest of DecisionWait after its first
// span arrived, RootWait after its root span arrived, and MaxTraceAge after
// its first span (all on this node's clock).
//
// Under pressure (relief.go), when the buffer is nearly full and cannot
// spill, the tick also takes the oldest traces and decides them early.
// With Config.Decisions (persist.go), each tick's decisions are written to
// disk, and Recover loads them and replays the buffer's write-ahead log
// before ingest starts.
//
// Accounting invariant, checked by tests: every span Consume accepts (or
// Recover reads back) is handed to the exporter, counted dropped (by
// policy, late after a drop decision, or unreadable from disk), handed
// off, or still buffered.
//
// Concurrency: Consume is safe for concurrent use (ingest calls it from many
// goroutines); the policy set is swapped atomically; Shutdown is idempotent.
package decision
