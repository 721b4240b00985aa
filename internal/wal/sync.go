package wal

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// run is the syncer: it writes the pending chunks, creating segment files
// as they come, fsyncs, and tells the waiting Writes; then deletes the
// segments no longer needed. The only goroutine that touches the files.
func (l *Log) run() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.kick:
		case <-t.C:
		case <-l.closing:
			l.flush()
			if l.file != nil {
				l.file.Close()
				l.file = nil
			}
			return
		}
		l.flush()
		l.deleteOld()
	}
}

// flush writes and syncs every pending chunk. A failure fails the whole
// batch: its Writes get the error, and the segment file is left for a new
// one, since after a failed write or fsync its content is unknown.
func (l *Log) flush() {
	l.mu.Lock()
	batch := l.pending
	l.pending, l.spareChunks = l.spareChunks[:0], nil
	from, to := l.durable.Load(), l.appended
	l.pendingBytes = 0
	needSync := l.needSync
	l.needSync = false
	l.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	l.busy.Store(time.Now().UnixNano())
	defer l.busy.Store(0)
	var err error
	for i := range batch {
		if err = l.writeChunk(&batch[i]); err != nil {
			break
		}
	}
	if err == nil && needSync {
		// Releases alone are written but not synced: a release lost in
		// a crash only replays a record (at least once).
		if err = l.file.Sync(); err == nil {
			l.stats.syncs.Add(1)
		}
	}
	if err != nil {
		err = l.failBatch(from, to, err)
	}
	l.mu.Lock()
	if err == nil {
		l.syncedSeg = l.fileSeg
	}
	for i := range batch {
		// Keep enough buffers for a few batches; large ones go.
		if cap(batch[i].buf) == chunkSize && len(l.free) < 64 {
			l.free = append(l.free, batch[i].buf[:0])
		}
		batch[i] = chunk{}
	}
	l.spareChunks = batch[:0]
	l.mu.Unlock()
	l.durable.Store(to)
	l.notifyMu.Lock()
	close(l.notify)
	l.notify = make(chan struct{})
	l.notifyMu.Unlock()
}

// writeChunk writes c to its segment's file, creating the file (and
// syncing the one before it, and the directory) when c starts a segment.
func (l *Log) writeChunk(c *chunk) error {
	if l.file == nil || c.seg != l.fileSeg {
		if l.file != nil {
			if err := l.file.Sync(); err != nil {
				return err
			}
			l.stats.syncs.Add(1)
			l.file.Close()
			l.file = nil
		}
		l.fileSeg = c.seg // a failure below abandons this segment
		f, err := l.fs.Create(l.path(c.seg))
		if err != nil {
			return err
		}
		l.file = f
		if _, err := f.Write(appendHeader(nil, l.sealer)); err != nil {
			return err
		}
		if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
			return err
		}
	}
	_, err := l.file.Write(c.buf)
	return err
}

// failBatch records a failed batch for its Writes and abandons the
// segment file. A full disk becomes ErrFull, which clients retry.
func (l *Log) failBatch(from, to int64, err error) error {
	l.stats.failures.Add(1)
	l.log.Error("wal: writing the log failed; the Writes of this batch are refused", "segment", l.path(l.fileSeg), "err", err)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		err = ErrFull
	} else {
		err = fmt.Errorf("wal: %w", err)
	}
	l.failMu.Lock()
	l.failed = append(l.failed, failure{from: from, to: to, err: err})
	if len(l.failed) > 16 {
		l.failed = l.failed[1:]
	}
	l.failMu.Unlock()
	if l.file != nil {
		l.file.Close()
		l.file = nil
	}
	l.mu.Lock()
	l.broken = l.fileSeg
	if l.seg == l.fileSeg {
		l.rotate()
	}
	l.mu.Unlock()
	return err
}

// deleteOld deletes the oldest segments while they hold no live record
// and are written whole. Only a prefix goes: a release logged in a later
// segment must outlive the records it releases.
func (l *Log) deleteOld() {
	l.mu.Lock()
	if !l.replayed {
		l.mu.Unlock()
		return
	}
	var gone []uint32
	for len(l.segments) > 1 && l.segments[0].live == 0 && l.segments[0].seg < l.syncedSeg && l.segments[0].seg < l.seg {
		gone = append(gone, l.segments[0].seg)
		l.bytes -= l.segments[0].bytes
		l.segments = l.segments[1:]
	}
	l.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	for _, seg := range gone {
		if err := l.fs.Remove(l.path(seg)); err != nil && !errors.Is(err, syscall.ENOENT) {
			l.log.Warn("wal: deleting a segment", "segment", l.path(seg), "err", err)
		}
	}
	l.stats.deleted.Add(int64(len(gone)))
	if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
		l.log.Warn("wal: syncing the directory after deletes", "err", err)
	}
}

// checkpointMinSegments is how many segments the log keeps before it
// copies records forward.
const checkpointMinSegments = 4

// CheckpointCandidate returns the oldest segment if it is sealed, holds a
// live record, and is mostly released or older than needed: copying its
// few live records to the head (Rewrite, then Release of the old refs)
// lets it, and the segments behind it, go.
func (l *Log) CheckpointCandidate() (uint32, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A few segments are the log's working set: traces being decided
	// release their records within seconds.
	if !l.replayed || len(l.segments) <= checkpointMinSegments {
		return 0, false
	}
	s := l.segments[0]
	if s.seg >= l.syncedSeg || s.live == 0 {
		return 0, false
	}
	// Copying a quarter of a segment frees the whole of it (and the
	// segments behind it, if released): worth it. A log past half its
	// budget copies up to half.
	crowded := l.bytes > l.cfg.MaxBytes/2
	return s.seg, s.live*4 <= s.records || (crowded && s.live*2 <= s.records)
}

// Close writes and syncs what is pending, then closes the log. If ctx
// ends first (the disk hangs) it returns ctx's error, and what was not
// synced is lost as in a crash: none of it was acknowledged. Writes after
// Close fail with ErrClosed.
func (l *Log) Close(ctx context.Context) error {
	l.closeMu.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.closing)
	})
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wal: closing: the disk did not finish in time: %w", ctx.Err())
	}
}

// Stats is a point-in-time view of the log.
type Stats struct {
	Segments             int
	Bytes, MaxBytes      int64 // of the segments (incl. pending), and the budget
	Pending              int64 // bytes waiting to be written
	Writes, Syncs        int64 // Write calls that appended, and fsyncs
	Records, RecordBytes int64 // appended, ever
	Releases             int64
	LiveRecords          int64
	Deleted              int64 // segments deleted
	Repaired             int64 // torn tails repaired at Open
	RepairedBytes        int64 // bytes dropped by those repairs
	Timeouts, Failures   int64 // Writes past SyncTimeout; batches that failed
	RefusedFull          int64
	RefusedBacklog       int64
	// Replay's progress: bytes of the segments found at Open, and read.
	ReplayBytes, ReplayedBytes int64
}

// Stats returns current figures.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	st := Stats{Segments: len(l.segments), Bytes: l.bytes, MaxBytes: l.cfg.MaxBytes, Pending: l.pendingBytes}
	for _, s := range l.segments {
		st.LiveRecords += s.live
	}
	l.mu.Unlock()
	c := &l.stats
	st.Writes, st.Syncs, st.Records, st.RecordBytes = c.writes.Load(), c.syncs.Load(), c.records.Load(), c.recordBytes.Load()
	st.Releases, st.Deleted, st.Repaired, st.RepairedBytes = c.releases.Load(), c.deleted.Load(), c.repaired.Load(), c.repairedBytes.Load()
	st.Timeouts, st.Failures, st.RefusedFull, st.RefusedBacklog = c.timeouts.Load(), c.failures.Load(), c.refusedFull.Load(), c.refusedBacklog.Load()
	st.ReplayBytes, st.ReplayedBytes = l.replayBytes, l.replayedBytes.Load()
	return st
}

// Full reports whether Write would refuse for the disk budget.
func (l *Log) Full() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes+l.otherBytes() >= l.cfg.MaxBytes
}

func (l *Log) otherBytes() int64 {
	if l.cfg.OtherBytes == nil {
		return 0
	}
	return l.cfg.OtherBytes()
}

// Stalled reports whether the disk has been writing one batch for longer
// than SyncTimeout: it hangs, and Writes are being refused.
func (l *Log) Stalled() bool {
	since := l.busy.Load()
	return since != 0 && time.Since(time.Unix(0, since)) > l.cfg.SyncTimeout
}

// Bytes returns the bytes of the log's segments, written or waiting.
func (l *Log) Bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}
