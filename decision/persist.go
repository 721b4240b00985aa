package decision

import (
	"context"
	"fmt"
	"slices"

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

// Recover restores what an earlier run of the node left in its data
// directory: the persisted decisions, then the traces of the buffer's
// write-ahead log, with their first arrival times, so they are decided
// when they would have been. Call it once, after New and before ingest
// starts. It returns the spans recovered.
func (e *Engine) Recover(ctx context.Context) (spans int64, err error) {
	if e.cfg.Decisions != nil {
		if err := e.loadDecisions(); err != nil {
			return 0, err
		}
	}
	var (
		b        otlpwire.Builder
		req      otlpwire.Request
		arena    []byte
		reqBuf   []byte
		arrivals = map[[16]byte]Arrival{}
	)
	flush := func() error {
		if b.Spans() == 0 {
			return nil
		}
		reqBuf = b.AppendRequest(reqBuf[:0])
		req.Reset()
		if err := req.Scan(reqBuf); err != nil {
			return fmt.Errorf("decision: recovered spans do not scan: %w", err)
		}
		req.GroupByTrace()
		if err := e.ConsumeGrouped(ctx, &req, Input{Arrivals: arrivals, Recovered: true}); err != nil {
			return fmt.Errorf("decision: recovering spans: %w", err)
		}
		spans += int64(b.Spans())
		b.Reset()
		clear(arrivals)
		arena = nil // the builder's spans alias it until the request is consumed
		return nil
	}
	_, err = e.buf.Recover(func(r *buffer.Recovered) error {
		for _, s := range r.Spans {
			start := len(arena)
			arena = append(arena, s.Raw...)
			b.Add(s.Group, arena[start:len(arena):len(arena)])
		}
		arrivals[r.ID] = Arrival{FirstSeen: r.FirstSeen, RootSeen: r.RootSeen, Logged: slices.Clone(r.Records)}
		if b.Size() >= 4<<20 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return spans, err
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
