package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/wal"
	"github.com/tailsift/tailsift/internal/wal/waltest"
	"google.golang.org/protobuf/encoding/protowire"
)

// openLog opens a write-ahead log in dir (on fs, if not nil), closed at
// the end of the test.
func openLog(t testing.TB, dir string, fs wal.FS) *wal.Log {
	t.Helper()
	cfg := wal.DefaultConfig()
	cfg.Dir, cfg.FS, cfg.SegmentSize = filepath.Join(dir, "wal"), fs, 1<<20
	l, err := wal.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// restart closes b and its log as a crash would leave them (nothing
// decided), opens a new buffer on the log in dir (on fs, if not nil) and
// recovers it (recoverAll). The new buffer is closed at the end of the test.
func restart(t *testing.T, b *Buffer, cfg *Config, dir string, fs wal.FS) map[[16]byte]*Recovered {
	t.Helper()
	b.Close()
	cfg.Log.Close(context.Background())
	cfg.Log = openLog(t, dir, fs)
	b2, err := New(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b2.Close)
	return recoverAll(t, b2)
}

// recoverAll reads the log back into one Recovered per trace: spans in
// the order written, the earliest arrivals, every record.
func recoverAll(t *testing.T, b *Buffer) map[[16]byte]*Recovered {
	t.Helper()
	got := map[[16]byte]*Recovered{}
	corrupt, err := b.Recover(func(r *Recovered) error {
		c := got[r.ID]
		if c == nil {
			c = &Recovered{ID: r.ID, FirstSeen: r.FirstSeen, RootSeen: r.RootSeen}
			got[r.ID] = c
		}
		c.FirstSeen = min(c.FirstSeen, r.FirstSeen)
		if r.RootSeen != 0 && (c.RootSeen == 0 || r.RootSeen < c.RootSeen) {
			c.RootSeen = r.RootSeen
		}
		for _, s := range r.Spans {
			c.Spans = append(c.Spans, RecoveredSpan{Group: otlpwire.Group{Resource: bytes.Clone(s.Group.Resource), Scope: bytes.Clone(s.Group.Scope)}, Raw: bytes.Clone(s.Raw)})
		}
		c.Records = append(c.Records, r.Records...)
		return nil
	})
	if err != nil || corrupt != 0 {
		t.Fatalf("Recover: %v, %d corrupt records", err, corrupt)
	}
	return got
}

// With a write-ahead log, spans survive the process: a buffer dropped
// without deciding anything (a crash) leaves records from which a new
// buffer recovers every trace with its arrival times and groups; traces
// forgotten before the crash do not return.
func TestWriteAheadRecovers(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Log = openLog(t, dir, nil)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"service.name=a", "service.name=b"}
	const traces, perRequest = 50, 3
	for r := range 2 {
		for tr := range traces {
			var bt Batch
			g := mustAcquire(t, b, keys[(tr+r)%2])
			if tr%10 == 0 && r == 0 {
				bt.StartTraceSeen(id(tr), 500, 0) // handed off: first seen earlier
			} else {
				bt.StartTrace(id(tr))
			}
			for i := r * perRequest; i < (r+1)*perRequest; i++ {
				bt.AddSpan(Span{Group: g, Raw: spanBytes(tr, i), Root: r == 1 && i == perRequest})
			}
			if _, err := b.Append(&bt, int64(1000+r*100+tr)); err != nil {
				t.Fatal(err)
			}
			b.Release(g)
		}
	}
	// Decide (forget) the first ten traces; crash with the rest buffered.
	forgotten := map[[16]byte]bool{}
	for _, tr := range b.TakeIf(func(x *[16]byte) bool { return x[15] < 10 && x[0] == 0 }, nil) {
		tr.Delivered(true)
		forgotten[tr.ID] = true
	}
	got := restart(t, b, &cfg, dir, nil)
	if len(got) != traces-len(forgotten) || len(forgotten) != 10 {
		t.Fatalf("recovered %d traces, want %d (%d forgotten)", len(got), traces-len(forgotten), len(forgotten))
	}
	for tr := range traces {
		r, ok := got[id(tr)]
		if forgotten[id(tr)] {
			if ok {
				t.Fatalf("trace %d recovered after it was forgotten", tr)
			}
			continue
		}
		wantFirst := int64(1000 + tr)
		if tr%10 == 0 {
			wantFirst = 500
		}
		if r.FirstSeen != wantFirst || r.RootSeen != int64(1100+tr) || len(r.Records) != 2 {
			t.Errorf("trace %d: first seen %d, root seen %d, %d records; want %d, %d, 2", tr, r.FirstSeen, r.RootSeen, len(r.Records), wantFirst, 1100+tr)
		}
		if len(r.Spans) != 2*perRequest {
			t.Fatalf("trace %d: %d spans, want %d", tr, len(r.Spans), 2*perRequest)
		}
		for i, s := range r.Spans {
			if wantKey := keys[(tr+i/perRequest)%2]; groupName(s.Group) != wantKey || !bytes.Equal(s.Raw, spanBytes(tr, i)) {
				t.Fatalf("trace %d span %d: group %q, bytes %x...; want group %q", tr, i, groupName(s.Group), s.Raw[:8], wantKey)
			}
		}
	}
}

// TestWriteAheadManyGroups: one request of a trace whose every span has a
// resource of its own is logged (each resource once, past the short-list
// index) and recovered with every span under its own resource.
func TestWriteAheadManyGroups(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Log = openLog(t, dir, nil)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	var bt Batch
	bt.StartTrace(id(1))
	for i := range n {
		key := fmt.Sprintf("resource-%d/scope-%d", i, i%3)
		g := mustAcquire(t, b, key)
		defer b.Release(g)
		bt.AddSpan(Span{Group: g, Raw: spanBytes(1, i)})
	}
	if _, err := b.Append(&bt, 1000); err != nil {
		t.Fatal(err)
	}
	r := restart(t, b, &cfg, dir, nil)[id(1)]
	if r == nil || len(r.Spans) != n {
		t.Fatalf("recovered %v, want %d spans", r, n)
	}
	for i, s := range r.Spans {
		if want := fmt.Sprintf("resource-%d/scope-%d", i, i%3); groupName(s.Group) != want || !bytes.Equal(s.Raw, spanBytes(1, i)) {
			t.Fatalf("span %d: group %q, want %q", i, groupName(s.Group), want)
		}
	}
}

// TestPowerLossKeepsAcknowledgedSpans is the buffer's durability contract:
// after a power cut at any moment (unsynced bytes lost, a torn tail) a new
// buffer recovers every span of every Append that returned nil, under its
// group, across segment rotations and many resources.
func TestPowerLossKeepsAcknowledgedSpans(t *testing.T) {
	for round := range 4 {
		fs := waltest.New()
		cfg := DefaultConfig()
		cfg.Log = openLog(t, "/data", fs)
		b, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		acked := map[[16]byte][]int{} // trace -> span numbers acknowledged
		var crashed *waltest.CrashFS
		var ackedAtCrash map[[16]byte][]int
		rng := rand.New(rand.NewPCG(uint64(round), 1))
		for req := range 600 {
			var bt Batch
			var groups []*Group
			for k := range 5 {
				tr := rng.IntN(400)
				g := mustAcquire(t, b, fmt.Sprintf("service.name=svc-%d/scope", (tr+k)%37))
				groups = append(groups, g)
				bt.StartTrace(id(tr))
				for i := range 3 {
					bt.AddSpan(Span{Group: g, Raw: spanBytes(tr, req*16+k*3+i)})
				}
			}
			if _, err := b.Append(&bt, int64(1000+req)); err != nil {
				t.Fatal(err)
			}
			for _, run := range bt.Traces {
				for _, s := range bt.Spans[run.Start:run.End] {
					acked[run.ID] = append(acked[run.ID], spanNumber(s.Raw))
				}
			}
			for _, g := range groups {
				b.Release(g)
			}
			if req == 300+round*50 {
				ackedAtCrash = map[[16]byte][]int{}
				for k, v := range acked {
					ackedAtCrash[k] = slices.Clone(v)
				}
				crashed = fs.Crash(rng)
			}
		}
		b.Close()
		cfg.Log.Close(context.Background())

		cfg.Log = openLog(t, "/data", crashed)
		b2, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := recoverAll(t, b2)
		for tid, want := range ackedAtCrash {
			r := got[tid]
			if r == nil {
				t.Fatalf("round %d: trace %x acknowledged, not recovered", round, tid)
			}
			have := map[int]bool{}
			for _, s := range r.Spans {
				tr, n := binary.BigEndian.Uint32(s.Raw), spanNumber(s.Raw)
				if want := fmt.Sprintf("service.name=svc-%d/scope", (int(tr)+n%16/3)%37); groupName(s.Group) != want {
					t.Fatalf("span %d of trace %d under group %q, want %q", n, tr, groupName(s.Group), want)
				}
				have[n] = true
			}
			for _, n := range want {
				if !have[n] {
					t.Fatalf("round %d: trace %x span %d acknowledged, not recovered", round, tid, n)
				}
			}
		}
		b2.Close()
	}
}

// TestCheckpointUnpinsTheLog: a trace buffered for long holds a record in
// the oldest segment while later traces come and go; the checkpoint copies
// its record forward, the log shrinks, and the trace still recovers whole.
func TestCheckpointUnpinsTheLog(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Log = openLog(t, dir, nil)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := appendTrace(t, b, id(0), "slow", 3, true, 1); err != nil {
		t.Fatal(err)
	}
	for tr := 1; tr < 60000; tr++ { // id(n) wraps at 65536
		if err := appendTrace(t, b, id(tr), "fast", 6, false, int64(tr)); err != nil {
			t.Fatal(err)
		}
		for _, x := range b.TakeIf(func(x *[16]byte) bool { return *x == id(tr) }, nil) {
			b.Forget(x)
		}
	}
	waitUntil(t, func() bool { return b.Stats().CheckpointMoved >= 1 && cfg.Log.Stats().Segments <= 3 }, "a checkpoint to free the old segments")
	got := restart(t, b, &cfg, dir, nil)
	if len(got) != 1 || got[id(0)] == nil || len(got[id(0)].Spans) != 3 || got[id(0)].FirstSeen != 1 || got[id(0)].RootSeen != 1 {
		t.Fatalf("recovered %d traces; the slow one: %+v", len(got), got[id(0)])
	}
}

// spanNumber is i of spanBytes(tr, i).
func spanNumber(raw []byte) int { return int(binary.BigEndian.Uint32(raw[4:])) }

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLegacyLogRecovered: records a version before the segment log wrote
// into the store (Config.Legacy) are recovered, with their groups and
// arrival times, and without segment records (Records nil), so that the
// Append that buffers them logs them again in the segment log: a node
// upgraded with acknowledged spans in its store loses none.
func TestLegacyLogRecovered(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	res, scope := []byte("service.name=old"), []byte("scope-1")
	const resHash, groupHash = 0x1111, 0x2222
	var keys, values [][]byte
	put := func(k, v []byte) { keys, values = append(keys, k), append(values, v) }
	put(resourceKey(nil, resHash), res)
	put(groupKey(nil, groupHash), append(binary.BigEndian.AppendUint64(nil, resHash), scope...))
	for tr := range 3 {
		for rec := range 2 {
			v := protowire.AppendVarint(nil, protowire.EncodeZigZag(int64(100+tr)))
			v = protowire.AppendVarint(v, protowire.EncodeZigZag(0))
			v = protowire.AppendVarint(v, 1)
			v = binary.BigEndian.AppendUint64(v, groupHash)
			span := spanBytes(tr, rec)
			v = protowire.AppendVarint(v, 0)
			v = protowire.AppendVarint(v, uint64(len(span)))
			v = append(v, span...)
			put(walKey(nil, &[16]byte{byte(tr), 9}, uint64(rec+1)), v)
		}
	}
	if err := st.Write(keys, values, 0, true); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Log, cfg.Legacy = openLog(t, dir, nil), st
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := recoverAll(t, b)
	if len(got) != 3 {
		t.Fatalf("recovered %d traces from the old log, want 3", len(got))
	}
	for tr := range 3 {
		r := got[[16]byte{byte(tr), 9}]
		if r == nil || len(r.Spans) != 2 || r.FirstSeen != int64(100+tr) || r.Records != nil {
			t.Fatalf("trace %d: %+v; want 2 spans first seen at %d, no segment records yet", tr, r, 100+tr)
		}
		for i, s := range r.Spans {
			if groupName(s.Group) != "service.name=old/scope-1" || !bytes.Equal(s.Raw, spanBytes(tr, i)) {
				t.Fatalf("trace %d span %d: group %q", tr, i, groupName(s.Group))
			}
		}
	}
}
