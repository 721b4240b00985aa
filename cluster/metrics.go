package cluster

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cluster's counters: atomics updated once per request or
// batch, read by Stats and exported as CounterFuncs (one source of truth).
type metrics struct {
	spansIn struct{ client, peer atomic.Int64 } // spans Router.Consume accepted, by source
	bytesIn atomic.Int64                        // raw span bytes received from peers

	queuedSpans     atomic.Int64 // spans in forward batches, queues or in flight
	spansOut        atomic.Int64 // spans a peer acknowledged
	bytesOut        atomic.Int64
	forwardFailures atomic.Int64 // failed attempts (each retried, rerouted or kept locally)
	requeued        struct {
		rerouted  atomic.Int64 // undelivered spans routed again (their peer left)
		keptLocal atomic.Int64 // undelivered spans kept on this node
	}

	handoff struct {
		tracesOut, spansOut, decisionsOut atomic.Int64 // acknowledged by the new owner
		tracesIn, spansIn, decisionsIn    atomic.Int64
		pendingSpans                      atomic.Int64 // taken from the engine, not yet delivered or given back
		givenBack                         atomic.Int64 // spans that could not be handed off, kept here
		failures                          atomic.Int64 // failed attempts
	}

	lost        atomic.Int64 // spans that could be neither forwarded nor kept
	ringChanges atomic.Int64
	members     atomic.Int64

	joinFailures  atomic.Int64 // join rounds that reached no peer before the node joined
	nameConflicts atomic.Int64 // gossip claims on a member's name from another address

	peerAuthFailures atomic.Int64 // peer link requests without the gossip key's token
}

func newMetrics(reg prometheus.Registerer, queueBytes func() float64) *metrics {
	if reg == nil { // allowed, as in every package: the counters still count, unexported
		reg = prometheus.NewRegistry()
	}
	m := &metrics{}
	counter := func(name, help string, v *atomic.Int64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	load := func(v *atomic.Int64) func() float64 { return func() float64 { return float64(v.Load()) } }
	dir := func(d string) prometheus.Labels { return prometheus.Labels{"direction": d} }
	const (
		spansHelp     = "Spans forwarded between nodes to their trace's owner, by direction (out: acknowledged by the peer; in: received from peers)."
		bytesHelp     = "Raw span bytes forwarded between nodes, by direction."
		receivedHelp  = "Spans accepted by this node's receivers, by source (client, or peer: forwarded by another node)."
		requeuedHelp  = "Forwarded spans that could not be delivered, by outcome: rerouted (their peer left; sent to the new owner) or kept_local (peer unreachable after retries)."
		hoTracesHelp  = "Buffered traces handed to their new owner after a ring change, by direction."
		hoSpansHelp   = "Spans of handed-off traces, by direction."
		hoDecideHelp  = "Remembered decisions handed to the new owner of their trace ID, by direction."
		hoFailedHelp  = "Hand-off attempts that failed (each retried, then the traces are kept here)."
		hoBackHelp    = "Spans of traces that could not be handed off and stayed on this node."
		membersHelp   = "Members in this node's view of the cluster ring."
		ringHelp      = "Times the ring changed (a member joined, left or failed)."
		failuresHelp  = "Forward attempts that failed; each is retried, rerouted or kept locally."
		queuedHelp    = "Spans waiting in forward batches and queues, or in flight to a peer."
		queueByteHelp = "Raw span bytes reserved in the forward queues (bounded by forward_queue_bytes)."
		joinHelp      = "Join rounds that reached no peer before this node joined its cluster; the node is not ready meanwhile and retries every second (see --join)."
		conflictHelp  = "Gossip messages that claimed a member's name from another address: two nodes with one node_name, which cannot be in one cluster. The node whose name is claimed reports not ready."
	)
	reg.MustRegister(
		counter("tailsift_cluster_received_spans_total", receivedHelp, &m.spansIn.client, prometheus.Labels{"source": "client"}),
		counter("tailsift_cluster_received_spans_total", receivedHelp, &m.spansIn.peer, prometheus.Labels{"source": "peer"}),
		counter("tailsift_cluster_forwarded_spans_total", spansHelp, &m.spansOut, dir("out")),
		counter("tailsift_cluster_forwarded_spans_total", spansHelp, &m.spansIn.peer, dir("in")),
		counter("tailsift_cluster_forwarded_bytes_total", bytesHelp, &m.bytesOut, dir("out")),
		counter("tailsift_cluster_forwarded_bytes_total", bytesHelp, &m.bytesIn, dir("in")),
		counter("tailsift_cluster_forward_failures_total", failuresHelp, &m.forwardFailures, nil),
		counter("tailsift_cluster_forward_requeued_spans_total", requeuedHelp, &m.requeued.rerouted, prometheus.Labels{"outcome": "rerouted"}),
		counter("tailsift_cluster_forward_requeued_spans_total", requeuedHelp, &m.requeued.keptLocal, prometheus.Labels{"outcome": "kept_local"}),
		gauge("tailsift_cluster_forward_queued_spans", queuedHelp, load(&m.queuedSpans)),
		gauge("tailsift_cluster_forward_queue_bytes", queueByteHelp, queueBytes),
		counter("tailsift_cluster_handoff_traces_total", hoTracesHelp, &m.handoff.tracesOut, dir("out")),
		counter("tailsift_cluster_handoff_traces_total", hoTracesHelp, &m.handoff.tracesIn, dir("in")),
		counter("tailsift_cluster_handoff_spans_total", hoSpansHelp, &m.handoff.spansOut, dir("out")),
		counter("tailsift_cluster_handoff_spans_total", hoSpansHelp, &m.handoff.spansIn, dir("in")),
		counter("tailsift_cluster_handoff_decisions_total", hoDecideHelp, &m.handoff.decisionsOut, dir("out")),
		counter("tailsift_cluster_handoff_decisions_total", hoDecideHelp, &m.handoff.decisionsIn, dir("in")),
		counter("tailsift_cluster_handoff_failures_total", hoFailedHelp, &m.handoff.failures, nil),
		counter("tailsift_cluster_handoff_kept_local_spans_total", hoBackHelp, &m.handoff.givenBack, nil),
		counter("tailsift_cluster_spans_dropped_total", "Spans the cluster layer had to drop: not forwarded, and the local buffer stayed full (reason forward_failed).", &m.lost, prometheus.Labels{"reason": "forward_failed"}),
		gauge("tailsift_cluster_members", membersHelp, load(&m.members)),
		counter("tailsift_cluster_ring_changes_total", ringHelp, &m.ringChanges, nil),
		counter("tailsift_cluster_join_failures_total", joinHelp, &m.joinFailures, nil),
		counter("tailsift_cluster_name_conflicts_total", conflictHelp, &m.nameConflicts, nil),
		counter("tailsift_cluster_peer_auth_failures_total",
			"Requests to the peer link (peer_listen) refused for not carrying the token of this node's gossip key (cluster_key_file).",
			&m.peerAuthFailures, nil),
	)
	return m
}
