package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// explainMethod asks a peer what it knows of a trace it owns.
const explainMethod = "/tailsift.cluster.v1.Peer/Explain"

// Explain answers for trace id from its owner: this node's engine if it
// owns the trace (or runs alone), else the owner's, over the peer service.
// The answer is the engine's JSON object (Engine.Explain), naming the node
// that answered; the caller owns it.
func (c *Cluster) Explain(ctx context.Context, id [16]byte) ([]byte, error) {
	st := c.router.current()
	o := st.ring.Owner(&id)
	if st.ring.Len() == 0 || o == st.self || o < 0 {
		return c.engine.Explain(id, c.cfg.NodeName), nil
	}
	m := st.ring.Members()[o]
	cl, err := c.handoff.client(m.Addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ForwardTimeout)
	defer cancel()
	var resp []byte
	if err := cl.Invoke(ctx, explainMethod, id[:], &resp); err != nil {
		return nil, fmt.Errorf("asking the trace's owner %s: %w", m.Name, err)
	}
	var x map[string]json.RawMessage // the cluster reads no further than "it is an object"
	if err := json.Unmarshal(resp, &x); err != nil {
		return nil, fmt.Errorf("owner %s answered: %w", m.Name, err)
	}
	return resp, nil
}

// explainHere answers a peer's Explain call from this node's engine.
func (c *Cluster) explainHere(body []byte) ([]byte, error) {
	if len(body) != 16 {
		return nil, status.Errorf(codes.InvalidArgument, "explain: a trace ID is 16 bytes, got %d", len(body))
	}
	return c.engine.Explain([16]byte(body), c.cfg.NodeName), nil
}
