package node

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/cluster"
	"github.com/tailsift/tailsift/internal/store"
)

// openStore opens data_dir and clears spilled span bytes left by an
// earlier run: they are not a recovery source (the write-ahead log is),
// and nothing references them any more.
func openStore(cfg Config, log *slog.Logger) (*store.Store, error) {
	var key []byte
	if cfg.DataKeyFile != "" {
		var err error
		if key, err = cluster.ReadKeyFile(cfg.DataKeyFile); err != nil {
			return nil, fmt.Errorf("data_key_file (--data-key-file): %w", err)
		}
	}
	st, err := store.Open(cfg.storeConfig(key), log.With("component", "store"))
	if err != nil {
		return nil, err
	}
	if err := st.DropPrefix(buffer.SpillPrefix); err != nil {
		st.Close()
		return nil, fmt.Errorf("data_dir %s: clearing spilled bytes of an earlier run: %w", cfg.DataDir, err)
	}
	return st, nil
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
		counter("tailsift_store_syncs_total", "fsyncs of the store (one per commit that holds write-ahead records).", sf(func(s store.Stats) int64 { return s.Syncs }), nil),
		counter("tailsift_store_refused_total", "Writes refused because the data directory was full.", sf(func(s store.Stats) int64 { return s.RefusedFull }), nil),
		counter("tailsift_store_gc_rewrites_total", "Value-log files rewritten by garbage collection.", sf(func(s store.Stats) int64 { return s.GCRewrites }), nil),
		gauge("tailsift_buffer_spilled_bytes", "Span bytes of buffered traces held on disk rather than in memory.", bf(func(s buffer.Stats) int64 { return s.SpilledBytes })),
		counter("tailsift_buffer_spill_bytes_total", "Span bytes moved from memory to disk.", bf(func(s buffer.Stats) int64 { return s.SpillWritten }), prometheus.Labels{"direction": "out"}),
		counter("tailsift_buffer_spill_bytes_total", "Span bytes moved from memory to disk.", bf(func(s buffer.Stats) int64 { return s.SpillLoaded }), prometheus.Labels{"direction": "in"}),
		counter("tailsift_buffer_spill_failures_total", "Spill batches the disk refused (full, or failing).", bf(func(s buffer.Stats) int64 { return s.SpillFailures }), nil),
		counter("tailsift_buffer_wal_commits_total", "Write-ahead commits (one per accepted request).", bf(func(s buffer.Stats) int64 { return s.WALPuts }), nil),
		counter("tailsift_buffer_wal_bytes_total", "Bytes written to the write-ahead log.", bf(func(s buffer.Stats) int64 { return s.WALBytes }), nil),
		counter("tailsift_buffer_wal_failures_total", "Requests refused because the write-ahead log could not be written.", bf(func(s buffer.Stats) int64 { return s.WALFailures }), nil),
	)
}
