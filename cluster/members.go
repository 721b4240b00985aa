package cluster

import (
	"bytes"
	"sync"

	"github.com/hashicorp/memberlist"
)

// view is this node's copy of the gossip members, kept by memberlist's
// event callbacks. Memberlist.Members returns memberlist's own records,
// which it rewrites (a refuted suspicion sets a new incarnation, address
// and metadata) under a lock its callers cannot take: reading them races.
// The callbacks run under that lock, so copies made there are whole.
type view struct {
	mu    sync.Mutex
	nodes map[string]memberlist.Node // by name; alive or suspect members
}

func (v *view) set(n *memberlist.Node) {
	c := *n
	c.Addr, c.Meta = bytes.Clone(n.Addr), bytes.Clone(n.Meta)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.nodes == nil {
		v.nodes = map[string]memberlist.Node{}
	}
	v.nodes[n.Name] = c
}

func (v *view) remove(name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.nodes, name)
}

func (v *view) get(name string) (memberlist.Node, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n, ok := v.nodes[name]
	return n, ok
}

// all returns the members. Their Addr and Meta are shared with the view,
// which replaces them rather than writing into them.
func (v *view) all() []memberlist.Node {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]memberlist.Node, 0, len(v.nodes))
	for _, n := range v.nodes {
		out = append(out, n)
	}
	return out
}

// events keeps the view and turns memberlist's callbacks (made under its
// locks) into a signal.
type events struct {
	changed chan struct{}
	view    *view
	notify  func(event string, args ...any) // Config.SecurityEvent, or nil
}

func (e events) NotifyJoin(n *memberlist.Node) {
	e.view.set(n)
	e.signal()
	if e.notify != nil {
		e.notify("member_joined", "member", n.Name, "gossip", n.Address())
	}
}

func (e events) NotifyLeave(n *memberlist.Node) {
	e.view.remove(n.Name)
	e.signal()
	if e.notify != nil {
		e.notify("member_left", "member", n.Name, "gossip", n.Address())
	}
}

func (e events) NotifyUpdate(n *memberlist.Node) { e.view.set(n); e.signal() }
func (e events) signal() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}
