package decision

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// Persisted decisions (Config.Decisions): each tick writes the tick's
// decisions in one unsynced batch (a process crash keeps them; a power cut
// may lose the last ones), keyed by trace ID, expiring after DecisionTTL:
//
//	key:   'd' | trace ID
//	value: 1 kept / 0 dropped | uvarint threshold | deciding rule name
//
// A restarted node loads them into its caches before it replays the
// write-ahead log, so recovered and late spans follow the decision made
// before the restart.

const decisionPrefix = 'd'

// recordDecision queues a decision for persistDecisions (decideMu held).
func (e *Engine) recordDecision(id *[16]byte, kept bool, threshold uint64, rule string) {
	if e.cfg.Decisions == nil {
		return
	}
	e.decisionOffs = append(e.decisionOffs, len(e.decisionBuf))
	e.decisionBuf = append(e.decisionBuf, decisionPrefix)
	e.decisionBuf = append(e.decisionBuf, id[:]...)
	kind := byte(0)
	if kept {
		kind = 1
	}
	e.decisionBuf = append(e.decisionBuf, kind)
	e.decisionBuf = protowire.AppendVarint(e.decisionBuf, threshold)
	e.decisionBuf = append(e.decisionBuf, rule...)
}

// persistDecisions writes the queued decisions in one batch (decideMu
// held). A failure is counted; the caches still hold the decisions.
func (e *Engine) persistDecisions() {
	if len(e.decisionOffs) == 0 {
		return
	}
	e.decisionOffs = append(e.decisionOffs, len(e.decisionBuf))
	for i := 0; i+1 < len(e.decisionOffs); i++ {
		start, end := e.decisionOffs[i], e.decisionOffs[i+1]
		e.decisionKeys = append(e.decisionKeys, e.decisionBuf[start:start+17])
		e.decisionValues = append(e.decisionValues, e.decisionBuf[start+17:end])
	}
	n := int64(len(e.decisionKeys))
	if err := e.cfg.Decisions.Write(e.decisionKeys, e.decisionValues, e.cfg.DecisionTTL, false); err != nil {
		e.count.decisionsFailed.Add(n)
	} else {
		e.count.decisionsSaved.Add(n)
	}
	clear(e.decisionKeys)
	clear(e.decisionValues)
	e.decisionKeys, e.decisionValues = e.decisionKeys[:0], e.decisionValues[:0]
	e.decisionOffs, e.decisionBuf = e.decisionOffs[:0], e.decisionBuf[:0]
}

// LoadDecisions restores the decisions an earlier run of the node
// persisted, so that spans of traces decided before the restart follow
// them. Call it once, after New and before ingest starts.
func (e *Engine) LoadDecisions() error {
	if e.cfg.Decisions == nil {
		return nil
	}
	return e.loadDecisions()
}

// Recover replays the buffer's write-ahead log: its traces, with their
// first arrival times, so they are decided when they would have been.
// Call it once, after LoadDecisions; ingest may run meanwhile. It returns
// the spans recovered, and ErrStopped if Shutdown began.
//
// The log's traces go back into the buffer as they are: each span keeps
// its group and its records (they are not logged again), and only the
// few fields the summary needs are read from its bytes. Spans of a trace
// decided before the restart follow the decision, as late spans do.
// Recovery does not fail for want of memory: past the memory limit the
// spill loop moves recovered traces to disk, and when it cannot, the
// oldest traces are decided early (stress relief), as under load.
func (e *Engine) Recover(_ context.Context) (spans int64, err error) {
	r := recovery{e: e, groups: map[groupParts]*buffer.Group{}}
	defer r.release()
	_, err = e.buf.Recover(r.trace)
	return r.spans, err
}

// recovery is Recover's working memory.
type recovery struct {
	e     *Engine
	spans int64
	batch buffer.Batch
	late  [][]byte
	// groups holds a reference to each group the log's spans use, by the
	// address of its parts: the buffer's Recover yields one group's parts
	// at one address. (A group met at another address is interned again,
	// which only costs a lookup.)
	groups map[groupParts]*buffer.Group
}

type groupParts struct {
	resource, scope  *byte
	resLen, scopeLen int
}

// trace restores one trace of the log (see Recover). t is valid during
// the call only.
func (r *recovery) trace(t *buffer.Recovered) error {
	e := r.e
	e.inflight.RLock()
	defer e.inflight.RUnlock()
	if e.stopping {
		return ErrStopped
	}
	n := int64(len(t.Spans))
	r.spans += n
	a := Arrival{FirstSeen: t.FirstSeen, RootSeen: t.RootSeen}
	v, info := e.follow(&t.ID, &a, t.Records, e.buf.WriteAhead())
	switch {
	case v == undecided:
		if err := r.buffer(t, a); err != nil {
			return err
		}
	case e.forwards(v):
		r.forward(t, info)
		e.count.kept.Add(n)
		e.count.lateKept.Add(n)
	default:
		e.count.droppedLate.Add(n)
	}
	e.count.recovered.Add(n)
	return nil
}

// buffer appends the trace's spans to the buffer, arrived at a.
func (r *recovery) buffer(t *buffer.Recovered, a Arrival) error {
	defer r.batch.Reset()
	r.batch.StartTraceSeen(t.ID, a.FirstSeen, a.RootSeen)
	r.batch.SetLogged(t.Records)
	for _, s := range t.Spans {
		g, err := r.group(s.Group)
		if err != nil {
			return fmt.Errorf("decision: recovering spans: %w", err)
		}
		f, ok := otlpwire.SpanFields(s.Raw)
		if !ok {
			return fmt.Errorf("decision: a recovered span of trace %x does not read", t.ID)
		}
		r.batch.AddSpan(buffer.Span{Group: g, Raw: s.Raw, StartUnixNano: f.StartUnixNano,
			EndUnixNano: f.EndUnixNano, Root: f.IsRoot(), Error: f.IsError()})
	}
	for attempt := 0; ; attempt++ {
		_, err := r.e.buf.Append(&r.batch, time.Now().UnixNano())
		if err == nil {
			return nil
		}
		var ra interface{ RetryAfter() time.Duration }
		if !errors.As(err, &ra) || attempt == maxRecoverAttempts {
			return fmt.Errorf("decision: recovering spans: %w", err)
		}
		if errors.Is(err, buffer.ErrFull) {
			if !r.e.makeRoom() {
				// Nothing left to decide, and still no room: the record
				// alone is larger than the buffer.
				r.e.count.droppedStorage.Add(int64(len(t.Spans)))
				r.e.buf.ForgetRecords(t.Records)
				return nil
			}
		} else {
			time.Sleep(100 * time.Millisecond) // the log is full or slow: decisions free it
		}
		if r.e.leaving.Load() {
			return ErrStopped
		}
	}
}

// maxRecoverAttempts bounds the retries of one recovered record.
const maxRecoverAttempts = 1000

// makeRoom frees buffer memory for recovery: by spilling, or else by
// deciding the oldest traces now. It reports false if nothing could go.
func (e *Engine) makeRoom() bool {
	if e.buf.WaitSpill(time.Second) {
		return true
	}
	e.decideMu.Lock()
	defer e.decideMu.Unlock()
	due := e.buf.TakeOldest(reliefBatch, nil)
	var spans int64
	for _, t := range due {
		t.Relieved = true
		spans += int64(t.SpanCount)
	}
	e.count.relievedTraces.Add(int64(len(due)))
	e.count.relievedSpans.Add(spans)
	e.decideAll(due, time.Now())
	e.persistDecisions()
	return len(due) > 0
}

// group returns the interned group of a recovered span.
func (r *recovery) group(wire otlpwire.Group) (*buffer.Group, error) {
	key := groupParts{unsafe.SliceData(wire.Resource), unsafe.SliceData(wire.Scope), len(wire.Resource), len(wire.Scope)}
	if g := r.groups[key]; g != nil {
		return g, nil
	}
	g, err := r.e.buf.Acquire(wire)
	if err != nil {
		return nil, err
	}
	r.groups[key] = g
	return g, nil
}

// release drops the references to the groups; the buffered traces keep
// their own.
func (r *recovery) release() {
	for _, g := range r.groups {
		r.e.buf.Release(g)
	}
	clear(r.groups)
}

// forward hands the spans of a trace that follows a decision to the
// exporter, one call per run of spans under the same group.
func (r *recovery) forward(t *buffer.Recovered, info keptInfo) {
	for i, s := range t.Spans {
		if i > 0 && !sameGroup(s.Group, t.Spans[i-1].Group) {
			r.e.exp.ExportSpans(t.Spans[i-1].Group, r.late, info.threshold, info.attrs)
			r.late = r.late[:0]
		}
		r.late = append(r.late, s.Raw)
	}
	if len(r.late) > 0 {
		r.e.exp.ExportSpans(t.Spans[len(t.Spans)-1].Group, r.late, info.threshold, info.attrs)
	}
	clear(r.late)
	r.late = r.late[:0]
}

// sameGroup reports whether a and b are one group at one address.
func sameGroup(a, b otlpwire.Group) bool {
	return unsafe.SliceData(a.Resource) == unsafe.SliceData(b.Resource) && len(a.Resource) == len(b.Resource) &&
		unsafe.SliceData(a.Scope) == unsafe.SliceData(b.Scope) && len(a.Scope) == len(b.Scope)
}

// loadDecisions fills the caches from the persisted decisions. The kept
// traces' root attributes come from the current policies' rule of the same
// name, if any.
func (e *Engine) loadDecisions() error {
	ps := e.policies.Load()
	return e.cfg.Decisions.Scan([]byte{decisionPrefix}, func(key, value []byte) error {
		if len(key) != 17 || len(value) < 1 {
			return nil
		}
		var id [16]byte
		copy(id[:], key[1:])
		if value[0] == 0 {
			e.dropped.addIfAbsent(id, struct{}{})
			return nil
		}
		threshold, n := protowire.ConsumeVarint(value[1:])
		if n < 0 {
			return nil
		}
		info := keptInfo{threshold: threshold}
		if out := ps.rules[string(value[1+n:])]; out != nil {
			info.attrs = out.keepAttrs
		}
		e.kept.addIfAbsent(id, info)
		return nil
	})
}
