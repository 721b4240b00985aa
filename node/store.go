package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/cluster"
	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/internal/spillfile"
	"github.com/tailsift/tailsift/internal/store"
	"github.com/tailsift/tailsift/internal/wal"
)

// dataDir is what lives in data_dir, each part in its own place, all on
// one disk_limit:
//
//	data_dir/        the store (Badger): decisions; the write-ahead log of
//	                 versions before segment files, read once
//	data_dir/spill/  span bytes spilled past memory_limit (plain files)
//	data_dir/wal/    the write-ahead log (durability wal)
type dataDir struct {
	store     *store.Store
	spill     *spillfile.Store
	spillDisk buffer.Disk // spill, sealed with data_key_file
	wal       *wal.Log    // nil: no log, or none to replay
}

// openDataDir opens data_dir. Spilled span bytes of an earlier run are
// cleared (they are not a recovery source, and nothing references them).
// With durability wal, or a log an earlier run left, it opens the log.
func openDataDir(cfg Config, log *slog.Logger) (_ *dataDir, err error) {
	var key []byte
	if cfg.DataKeyFile != "" {
		if key, err = cluster.ReadKeyFile(cfg.DataKeyFile); err != nil {
			return nil, fmt.Errorf("data_key_file (--data-key-file): %w", err)
		}
	}
	d := &dataDir{}
	defer func() {
		if err != nil {
			d.close(context.Background())
		}
	}()
	// Each part counts the others' bytes against disk_limit.
	var st atomic.Pointer[store.Store]
	var sp atomic.Pointer[spillfile.Store]
	var wl atomic.Pointer[wal.Log]
	storeBytes := func() int64 {
		if s := st.Load(); s != nil {
			return s.OwnBytes()
		}
		return 0
	}
	spillBytes := func() int64 {
		if s := sp.Load(); s != nil {
			return s.OwnBytes()
		}
		return 0
	}
	walBytes := func() int64 {
		if l := wl.Load(); l != nil {
			return l.Bytes()
		}
		return 0
	}
	sc := cfg.storeConfig(key)
	sc.OtherBytes = func() int64 { return spillBytes() + walBytes() }
	if d.store, err = store.Open(sc, log.With("component", "store")); err != nil {
		return nil, err
	}
	st.Store(d.store)
	// Versions before data_dir/spill spilled into the store.
	if err := d.store.DropPrefix(buffer.SpillPrefix); err != nil {
		return nil, fmt.Errorf("data_dir %s: clearing spilled bytes of an earlier run: %w", cfg.DataDir, err)
	}
	pc := cfg.spillConfig()
	pc.OtherBytes = func() int64 { return storeBytes() + walBytes() }
	if d.spill, err = spillfile.Open(pc, log.With("component", "spill")); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	sp.Store(d.spill)
	d.spillDisk = d.spill
	if len(key) > 0 {
		if d.spillDisk, err = spillfile.NewSealed(d.spill, key); err != nil {
			return nil, err
		}
	}
	if cfg.Durability == DurabilityWAL || hasLog(cfg.walConfig(nil).Dir) {
		// With durability none, a log an earlier run left is replayed,
		// then deleted (replayDone).
		wc := cfg.walConfig(key)
		wc.OtherBytes = func() int64 { return storeBytes() + spillBytes() }
		if d.wal, err = wal.Open(wc, log.With("component", "wal")); err != nil {
			return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
		}
		wl.Store(d.wal)
	}
	return d, nil
}

// close closes the parts, the log first, each bounded by ctx: on a disk
// that hangs, shutdown ends anyway (what was not synced was not
// acknowledged either).
func (d *dataDir) close(ctx context.Context) error {
	var errs []error
	if d.wal != nil {
		errs = append(errs, d.wal.Close(ctx))
	}
	if d.spill != nil {
		errs = append(errs, closeBounded(ctx, d.spill.Close))
	}
	if d.store != nil {
		errs = append(errs, closeBounded(ctx, d.store.Close))
	}
	return errors.Join(errs...)
}

// closeBounded runs closeFn and waits for it up to ctx.
func closeBounded(ctx context.Context, closeFn func() error) error {
	done := make(chan error, 1)
	go func() { done <- closeFn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("closing data_dir: the disk did not finish in time: %w", ctx.Err())
	}
}

// registerStoreMetrics exports the data directory's figures.
func registerStoreMetrics(reg prometheus.Registerer, st *store.Store, buf *buffer.Buffer) {
	counter := func(name, help string, f func() int64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	sf := func(f func(store.Stats) int64) func() int64 { return func() int64 { return f(st.Stats()) } }
	bf := func(f func(buffer.Stats) int64) func() int64 { return func() int64 { return f(buf.Stats()) } }
	reg.MustRegister(
		gauge("tailsift_store_disk_bytes", "Bytes the data directory takes on disk.", sf(func(s store.Stats) int64 { return s.DiskBytes })),
		gauge("tailsift_store_disk_limit_bytes", "The data directory's limit (--disk-limit).", sf(func(s store.Stats) int64 { return s.DiskLimit })),
		gauge("tailsift_store_full", "1 while the data directory is at its limit: spilling stops and wal durability refuses spans.", func() int64 {
			if st.Full() {
				return 1
			}
			return 0
		}),
		counter("tailsift_store_commits_total", "Store commits, each of one or more concurrent writes (group commit).", sf(func(s store.Stats) int64 { return s.CommitGroups }), nil),
		counter("tailsift_store_refused_total", "Writes refused because the data directory was full.", sf(func(s store.Stats) int64 { return s.RefusedFull }), nil),
		counter("tailsift_store_gc_rewrites_total", "Value-log files rewritten by garbage collection.", sf(func(s store.Stats) int64 { return s.GCRewrites }), nil),
		gauge("tailsift_buffer_spilled_bytes", "Span bytes of buffered traces held on disk rather than in memory.", bf(func(s buffer.Stats) int64 { return s.SpilledBytes })),
		counter("tailsift_buffer_spill_bytes_total", "Span bytes moved from memory to disk.", bf(func(s buffer.Stats) int64 { return s.SpillWritten }), prometheus.Labels{"direction": "out"}),
		counter("tailsift_buffer_spill_bytes_total", "Span bytes moved from memory to disk.", bf(func(s buffer.Stats) int64 { return s.SpillLoaded }), prometheus.Labels{"direction": "in"}),
		counter("tailsift_buffer_spill_failures_total", "Spill batches the disk refused (full, or failing).", bf(func(s buffer.Stats) int64 { return s.SpillFailures }), nil),
	)
}

// registerWALMetrics exports the write-ahead log's figures (l nil: none).
func registerWALMetrics(reg prometheus.Registerer, l *wal.Log, buf *buffer.Buffer) {
	counter := func(name, help string, f func() int64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	wf := func(f func(wal.Stats) int64) func() int64 {
		return func() int64 {
			if l == nil { // durability none: the log's figures stay 0
				return 0
			}
			return f(l.Stats())
		}
	}
	bf := func(f func(buffer.Stats) int64) func() int64 { return func() int64 { return f(buf.Stats()) } }
	reg.MustRegister(
		counter("tailsift_buffer_wal_commits_total", "Write-ahead commits (one per accepted request).", bf(func(s buffer.Stats) int64 { return s.WALPuts }), nil),
		counter("tailsift_buffer_wal_bytes_total", "Bytes written to the write-ahead log.", wf(func(s wal.Stats) int64 { return s.RecordBytes }), nil),
		counter("tailsift_buffer_wal_failures_total", "Requests refused because the write-ahead log could not be written (full, slow or failing disk).", bf(func(s buffer.Stats) int64 { return s.WALFailures }), nil),
		gauge("tailsift_wal_segments", "Segment files of the write-ahead log.", wf(func(s wal.Stats) int64 { return int64(s.Segments) })),
		gauge("tailsift_wal_replay_bytes", "Bytes of write-ahead log found at start, to replay.", wf(func(s wal.Stats) int64 { return s.ReplayBytes })),
		gauge("tailsift_wal_replayed_bytes", "Bytes of the write-ahead log found at start replayed so far (the node is not ready until all are).", wf(func(s wal.Stats) int64 { return s.ReplayedBytes })),
		gauge("tailsift_wal_bytes", "Bytes of the write-ahead log's segments, written or waiting.", wf(func(s wal.Stats) int64 { return s.Bytes })),
		gauge("tailsift_wal_pending_bytes", "Bytes of the write-ahead log waiting for the disk.", wf(func(s wal.Stats) int64 { return s.Pending })),
		gauge("tailsift_wal_live_records", "Write-ahead records of traces still buffered or being exported.", wf(func(s wal.Stats) int64 { return s.LiveRecords })),
		counter("tailsift_wal_syncs_total", "fsyncs of write-ahead segments (one per group of concurrent commits, and one per rotation).", wf(func(s wal.Stats) int64 { return s.Syncs }), nil),
		counter("tailsift_wal_segments_deleted_total", "Write-ahead segments deleted once nothing in them was needed.", wf(func(s wal.Stats) int64 { return s.Deleted }), nil),
		counter("tailsift_wal_checkpoint_records_total", "Live records of old segments copied forward so the segments could go.", bf(func(s buffer.Stats) int64 { return s.CheckpointMoved }), nil),
		counter("tailsift_wal_repaired_bytes_total", "Bytes of torn segment tails truncated at start (never acknowledged).", wf(func(s wal.Stats) int64 { return s.RepairedBytes }), nil),
		counter("tailsift_wal_refused_total", "Commits refused by the write-ahead log, by reason.", wf(func(s wal.Stats) int64 { return s.RefusedFull }), prometheus.Labels{"reason": "full"}),
		counter("tailsift_wal_refused_total", "Commits refused by the write-ahead log, by reason.", wf(func(s wal.Stats) int64 { return s.RefusedBacklog }), prometheus.Labels{"reason": "backlog"}),
		counter("tailsift_wal_refused_total", "Commits refused by the write-ahead log, by reason.", wf(func(s wal.Stats) int64 { return s.Timeouts }), prometheus.Labels{"reason": "timeout"}),
		counter("tailsift_wal_refused_total", "Commits refused by the write-ahead log, by reason.", wf(func(s wal.Stats) int64 { return s.Failures }), prometheus.Labels{"reason": "io_error"}),
	)
}

// hasLog reports whether dir holds segment files.
func hasLog(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) > 0
}

// startReplay recovers what an earlier run left in data_dir, in the
// background: /readyz says not ready until it is done.
func (n *Node) startReplay() {
	n.replaying.Store(true)
	n.replayDone = make(chan struct{})
	go func() {
		defer close(n.replayDone)
		defer n.replaying.Store(false)
		start := time.Now()
		stop := make(chan struct{})
		defer close(stop)
		go n.logReplayProgress(stop, start)
		spans, err := n.engine.Recover(context.Background())
		switch {
		case errors.Is(err, decision.ErrStopped):
			n.log.Warn("shutdown during recovery; the rest of the write-ahead log is replayed at the next start", "spans", spans)
			return
		case err != nil:
			n.replayErr.Store(&err)
			n.log.Error("recovering from data_dir failed; the node stays not ready", "data_dir", n.cfg.DataDir, "spans", spans, "err", err)
			return
		}
		if spans > 0 {
			n.log.Info("recovered buffered spans from the write-ahead log", "spans", spans,
				"traces", n.buf.Stats().Traces, "took", time.Since(start).Round(time.Millisecond))
		}
		// The old write-ahead keys of the store are logged again or decided.
		for _, p := range buffer.LegacyPrefixes {
			if err := n.store.DropPrefix(p); err != nil {
				n.log.Warn("data_dir: dropping the old write-ahead keys", "err", err)
			}
		}
		if n.cfg.Durability != DurabilityWAL && n.wal != nil {
			// Replayed with durability none: the log is not written any more.
			n.wal.Close(context.Background())
			if err := os.RemoveAll(n.cfg.walConfig(nil).Dir); err != nil {
				n.log.Warn("data_dir: deleting the write-ahead log replayed", "err", err)
			}
		}
	}()
}

// logReplayProgress logs the replay's progress every 5 seconds.
func (n *Node) logReplayProgress(stop chan struct{}, start time.Time) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			st := n.engine.Stats()
			args := []any{"spans", st.Recovered, "elapsed", time.Since(start).Round(time.Second)}
			if n.wal != nil {
				ws := n.wal.Stats()
				args = append(args, "bytes_read", ws.ReplayedBytes, "bytes_total", ws.ReplayBytes)
			}
			n.log.Info("recovering from the write-ahead log", args...)
		}
	}
}

// Recovering reports whether the node is still replaying what an earlier
// run left in data_dir.
func (n *Node) Recovering() bool { return n.replaying.Load() }

// waitReplay waits, up to ctx, for the replay to end (Shutdown stops it).
func (n *Node) waitReplay(ctx context.Context) error {
	if n.replayDone == nil {
		return nil
	}
	select {
	case <-n.replayDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the write-ahead log's replay to stop: %w", ctx.Err())
	}
}

// dataDirNotReady says why data_dir keeps the node from taking traffic:
// replay in progress or failed, the disk full or hanging.
func (n *Node) dataDirNotReady() string {
	if n.store == nil {
		return ""
	}
	if p := n.replayErr.Load(); p != nil {
		return "recovering from data_dir failed: " + (*p).Error()
	}
	if n.replaying.Load() {
		return "recovering: replaying the write-ahead log in data_dir"
	}
	if n.cfg.Durability == DurabilityWAL && n.wal.Full() {
		return "data_dir is full (disk_limit, or no space left): spans are refused until decided traces free it"
	}
	if n.cfg.Durability == DurabilityWAL && n.wal.Stalled() {
		return "the disk of data_dir is not answering (disk_timeout)"
	}
	return ""
}

// closeDataDir closes what data_dir holds (dataDir.close).
func (n *Node) closeDataDir(ctx context.Context) error {
	if n.data == nil {
		return nil
	}
	return n.data.close(ctx)
}
