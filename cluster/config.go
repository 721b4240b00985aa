package cluster

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Config configures a cluster node. Zero durations and sizes mean their
// defaults (DefaultConfig); New does not modify the caller's Config.
type Config struct {
	// NodeName identifies the node; unique in the cluster. Flag --node-name.
	// "" means the host name and the gossip port, "<host>-<port>", taken
	// by New once the gossip port is bound (so port 0 yields the port the
	// kernel chose): unique for several nodes on one host, and stable
	// across restarts of a node that keeps its port, as ring ownership
	// wants. In Kubernetes the host name is the pod name. With clustering
	// off it is the host name.
	NodeName string
	// Bind is the gossip listen address (TCP and UDP). "" disables
	// clustering: the node owns every trace. Flag --cluster-bind.
	Bind string
	// Advertise is the address peers reach this node's gossip on; "" means
	// Bind's, or a private IP of this host if Bind's host is unspecified.
	// Peers forward spans to its host at the OTLP/gRPC port. Flag
	// --cluster-advertise.
	Advertise string
	// Join lists host:port of nodes to join. A name resolving to several
	// addresses joins them all; names are resolved again every
	// RejoinInterval, so nodes that start later (or a split cluster) join.
	// Flag --join.
	Join []string
	// RejoinInterval is how often Join is resolved again and unknown
	// addresses joined. Default 30s.
	RejoinInterval time.Duration
	// SecretKey encrypts gossip (16, 24 or 32 bytes); nil means plaintext.
	// Flag --cluster-key-file (see ReadKeyFile).
	SecretKey []byte
	// VirtualNodes is the number of ring points per member.
	VirtualNodes int
	// NameConflictHold: after gossip claimed this node's name from another
	// address (two nodes with one name), the node reports not ready until
	// no claim has arrived for this long. The claim comes back with the
	// other node's rejoin and push-pull rounds (every 30s by default), so
	// the default is 1m.
	NameConflictHold time.Duration

	// ProbeInterval and SuspicionMult tune failure detection (memberlist's
	// LAN defaults: 1s and 4, which declare a killed node dead after about
	// 5 to 10 seconds). Tests shorten them.
	ProbeInterval time.Duration
	SuspicionMult int

	// ForwardQueueBytes bounds the raw span bytes waiting to be forwarded;
	// past it ingest answers "retry later". Default 64 MiB.
	ForwardQueueBytes int
	// ForwardBatchBytes and ForwardBatchTimeout: a batch to a peer is sent
	// when it reaches this size or this age. Defaults 512 KiB, 20ms.
	ForwardBatchBytes   int
	ForwardBatchTimeout time.Duration
	// ForwardWorkers is the number of requests in flight per peer. Default 2.
	ForwardWorkers int
	// ForwardTimeout bounds one attempt. Default 5s.
	ForwardTimeout time.Duration
	// ForwardSync makes the client's OK wait until each owner has
	// acknowledged its spans (--durability=wal: the owner logged them), or
	// this node has taken them itself when the owner did not answer in one
	// attempt. Without it spans wait in memory queues after the OK.
	ForwardSync bool
	// Retry backoff for forwards: full jitter from ForwardRetryInitial,
	// doubling up to ForwardRetryMax. A batch still undelivered after
	// ForwardRetryMaxElapsed is kept on this node. Defaults 50ms, 1s, 30s
	// (longer than failure detection takes, so a dead peer's batches are
	// rerouted to its successor rather than kept here).
	ForwardRetryInitial    time.Duration
	ForwardRetryMax        time.Duration
	ForwardRetryMaxElapsed time.Duration

	// PeerListen is the peer link's listen address: peers forward spans,
	// hand off traces and ask for explanations there, never on the OTLP
	// listeners. "" means Bind's host at DefaultPeerPort. Flag
	// --peer-listen.
	PeerListen string
	// PeerMaxRequestBytes bounds one message on the peer link. Default
	// 16 MiB.
	PeerMaxRequestBytes int
	// PeerConcurrentRequests bounds the peer link's requests in progress,
	// from all peers together; past it peers are told to retry. With
	// PeerMaxRequestBytes it bounds the peer link's memory. Default 32.
	PeerConcurrentRequests int

	// PeerServerTLS, if set, is the peer link's TLS; it should require
	// client certificates (mutual TLS: only nodes with a certificate of the
	// peer CA get in). PeerDialTLS makes the config to dial a peer's host
	// (the peer link's address as gossip gives it, without the port).
	// Either both or neither. Flags --peer-tls-*.
	PeerServerTLS *tls.Config
	PeerDialTLS   func(host string) *tls.Config

	// SecurityEvent, if set, is told of members joining and leaving and of
	// calls refused on the peer link (the node's audit log). It is called
	// from memberlist's and gRPC's goroutines, some holding locks: it must
	// not block or call back into the cluster.
	SecurityEvent func(event string, args ...any)

	// HandoffBatchBytes bounds one hand-off message. Default 1 MiB.
	HandoffBatchBytes int
	// HandoffRetryMaxElapsed: traces not handed off after this long stay
	// here and are decided here. Default 15s.
	HandoffRetryMaxElapsed time.Duration
}

// DefaultConfig returns the defaults documented on Config, with
// clustering on 127.0.0.1:7946 and the node name left to New.
func DefaultConfig() Config {
	return Config{
		Bind:                   "127.0.0.1:7946",
		RejoinInterval:         30 * time.Second,
		VirtualNodes:           DefaultVirtualNodes,
		NameConflictHold:       time.Minute,
		ForwardQueueBytes:      64 << 20,
		ForwardBatchBytes:      512 << 10,
		ForwardBatchTimeout:    20 * time.Millisecond,
		ForwardWorkers:         2,
		ForwardTimeout:         5 * time.Second,
		ForwardRetryInitial:    50 * time.Millisecond,
		ForwardRetryMax:        time.Second,
		ForwardRetryMaxElapsed: 30 * time.Second,
		HandoffBatchBytes:      1 << 20,
		HandoffRetryMaxElapsed: 15 * time.Second,
		PeerMaxRequestBytes:    16 << 20,
		PeerConcurrentRequests: 32,
	}
}

// DefaultPeerPort is the peer link's port when PeerListen is not set.
const DefaultPeerPort = "4319"

// EnsureDefaults returns c with its zero durations and sizes set to their
// defaults, for New; the caller's Config is not changed. An empty Bind or
// Advertise, no Join and no SecretKey mean what their fields say.
func (c Config) EnsureDefaults() Config {
	d := DefaultConfig()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.RejoinInterval, d.RejoinInterval)
	setInt(&c.VirtualNodes, d.VirtualNodes)
	setDur(&c.NameConflictHold, d.NameConflictHold)
	setInt(&c.ForwardQueueBytes, d.ForwardQueueBytes)
	setInt(&c.ForwardBatchBytes, d.ForwardBatchBytes)
	setDur(&c.ForwardBatchTimeout, d.ForwardBatchTimeout)
	setInt(&c.ForwardWorkers, d.ForwardWorkers)
	setDur(&c.ForwardTimeout, d.ForwardTimeout)
	setDur(&c.ForwardRetryInitial, d.ForwardRetryInitial)
	setDur(&c.ForwardRetryMax, d.ForwardRetryMax)
	setDur(&c.ForwardRetryMaxElapsed, d.ForwardRetryMaxElapsed)
	setInt(&c.HandoffBatchBytes, d.HandoffBatchBytes)
	setDur(&c.HandoffRetryMaxElapsed, d.HandoffRetryMaxElapsed)
	setInt(&c.PeerMaxRequestBytes, d.PeerMaxRequestBytes)
	setInt(&c.PeerConcurrentRequests, d.PeerConcurrentRequests)
	if c.PeerListen == "" && c.Bind != "" {
		if host, _, err := net.SplitHostPort(c.Bind); err == nil {
			c.PeerListen = net.JoinHostPort(host, DefaultPeerPort)
		}
	}
	return c
}

// Validate reports every problem of c.EnsureDefaults(), the configuration
// New would run with, naming the flag that fixes it.
func (c Config) Validate() error {
	c = c.EnsureDefaults()
	var errs []error
	if c.Bind == "" {
		return nil // clustering off: nothing else is used
	}
	if _, _, err := net.SplitHostPort(c.Bind); err != nil {
		errs = append(errs, fmt.Errorf("cluster_bind (--cluster-bind) %q: %v", c.Bind, err))
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("cluster_advertise (--cluster-advertise) %q: %v", c.Advertise, err))
		}
	}
	if _, _, err := net.SplitHostPort(c.PeerListen); err != nil {
		errs = append(errs, fmt.Errorf("peer_listen (--peer-listen) %q: %v", c.PeerListen, err))
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("join (--join) %q: want host:port: %v", j, err))
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("cluster_key_file (--cluster-key-file): the key must be 16, 24 or 32 bytes, got %d", len(c.SecretKey)))
	}
	for _, v := range []struct {
		name string
		bad  bool
	}{
		{"rejoin interval", c.RejoinInterval < 0},
		{"name conflict hold", c.NameConflictHold < 0},
		{"forward queue bytes", c.ForwardQueueBytes < 0},
		{"forward batch bytes", c.ForwardBatchBytes < 0},
		{"forward workers", c.ForwardWorkers < 0},
		{"forward retry durations", c.ForwardRetryInitial < 0 || c.ForwardRetryMax < 0 || c.ForwardRetryMaxElapsed < 0},
		{"hand-off settings", c.HandoffBatchBytes < 0 || c.HandoffRetryMaxElapsed < 0},
		{"peer link bounds", c.PeerMaxRequestBytes < 0 || c.PeerConcurrentRequests < 0},
	} {
		if v.bad {
			errs = append(errs, fmt.Errorf("cluster: %s must not be negative", v.name))
		}
	}
	return errors.Join(errs...)
}

// ReadKeyFile reads an encryption key: 16, 24 or 32 bytes, base64 encoded
// (as made by `head -c 32 /dev/urandom | base64`). Only base64: accepting
// raw bytes too would make some files mean two different keys (32 ASCII
// characters are also the base64 of 24 bytes). The node reads both the
// gossip key and the data directory's key with it, so its errors say "key
// file" and the caller names the setting.
func ReadKeyFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("key file %s: not base64 (make one with: head -c 32 /dev/urandom | base64): %v", path, err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("key file %s: the key must be 16, 24 or 32 bytes, got %d", path, n)
	}
	return key, nil
}
