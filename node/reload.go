package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	tailsift "github.com/tailsift/tailsift"
	"github.com/tailsift/tailsift/policy"
)

// policies keeps the node's policy set current: it reloads the file when it
// changes (polled, which also sees Kubernetes ConfigMap symlink swaps), on
// SIGHUP and on POST /-/reload. A new set is validated before it is swapped
// in; an invalid file is logged and counted, and the running set stays.
type policies struct {
	n    *Node
	path string // "" = the embedded example

	mu     sync.Mutex // one reload at a time
	loaded []byte     // source of the running set
	hash   string

	reloads  *prometheus.CounterVec // outcome
	info     *prometheus.GaugeVec   // hash
	lastGood prometheus.Gauge

	stop chan struct{}
	done chan struct{}
}

func newPolicies(n *Node, path string, reg prometheus.Registerer) *policies {
	p := &policies{
		n: n, path: path,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailsift_policy_reloads_total",
			Help: "Policy reloads by outcome: success, failure (invalid file; the previous policies keep running), unchanged.",
		}, []string{"outcome"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tailsift_policy_info",
			Help: "The loaded policy set: 1 for its sha256 hash (first 16 hex digits).",
		}, []string{"hash"}),
		lastGood: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tailsift_policy_last_reload_success_timestamp_seconds",
			Help: "When the running policy set was loaded.",
		}),
	}
	for _, o := range []string{"success", "failure", "unchanged"} {
		p.reloads.WithLabelValues(o)
	}
	reg.MustRegister(p.reloads, p.info, p.lastGood)
	return p
}

// read returns the policy file's bytes and a name for error messages.
func (p *policies) read() ([]byte, string, error) {
	if p.path == "" {
		return tailsift.ExamplePolicies, "policies.example.yaml (embedded)", nil
	}
	b, err := os.ReadFile(p.path)
	return b, p.path, err
}

// initial loads the first set; an error here stops the node from starting.
func (p *policies) initial() (*policy.Set, error) {
	src, name, err := p.read()
	if err != nil {
		return nil, err
	}
	set, err := policy.Parse(name, src)
	if err != nil {
		return nil, err
	}
	p.accept(src)
	return set, nil
}

func (p *policies) accept(src []byte) {
	sum := sha256.Sum256(src)
	p.loaded = bytes.Clone(src)
	p.info.Reset()
	p.hash = hex.EncodeToString(sum[:8])
	p.info.WithLabelValues(p.hash).Set(1)
	p.lastGood.SetToCurrentTime()
}

// reload reads and validates the file and swaps it in if it changed. It
// returns the validation error of a rejected file. Every outcome but an
// unchanged file found by polling goes to the audit log.
func (p *policies) reload(trigger string) (err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before, outcome := p.hash, "success"
	defer func() {
		if outcome == "unchanged" && trigger == triggerFileChange {
			return
		}
		p.n.audit.Event("policy_reload", "trigger", trigger, "outcome", outcome, "hash_before", before, "hash_after", p.hash,
			"file", p.path, "error", errString(err))
	}()
	src, name, err := p.read()
	if err != nil {
		outcome = "failure"
		p.reloads.WithLabelValues("failure").Inc()
		p.n.log.Error("policy reload failed: cannot read the file; the previous policies keep running",
			"trigger", trigger, "err", err)
		return err
	}
	if bytes.Equal(src, p.loaded) {
		outcome = "unchanged"
		p.reloads.WithLabelValues("unchanged").Inc()
		return nil
	}
	set, err := policy.Parse(name, src)
	if err != nil {
		outcome = "failure"
		p.reloads.WithLabelValues("failure").Inc()
		p.n.log.Error("policy reload rejected: the previous policies keep running",
			"trigger", trigger, "err", err)
		return err
	}
	p.n.engine.SetPolicies(set)
	p.accept(src)
	p.reloads.WithLabelValues("success").Inc()
	p.n.log.Info("policies reloaded", "trigger", trigger, "file", name, "hash", p.hash, "rules", set.RuleNames())
	return nil
}

// triggerFileChange is the reload trigger of the file poll.
const triggerFileChange = "file change"

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// watch polls the file every interval until stopped.
func (p *policies) watch(interval time.Duration) {
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		if p.path == "" || interval <= 0 {
			<-p.stop
			return
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.reload(triggerFileChange)
			}
		}
	}()
}

func (p *policies) close() {
	if p.stop != nil {
		close(p.stop)
		<-p.done
	}
}

// ReloadPolicies reloads the policy file now (SIGHUP, POST /-/reload). An
// invalid file is rejected with its validation errors and the running
// policies stay.
func (n *Node) ReloadPolicies(trigger string) error {
	return n.policies.reload(trigger)
}

// PolicyHash identifies the running policy set (first 16 hex digits of the
// sha256 of its source).
func (n *Node) PolicyHash() string {
	n.policies.mu.Lock()
	defer n.policies.mu.Unlock()
	return n.policies.hash
}
