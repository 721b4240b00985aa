package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tailsift/tailsift/decision"
)

// explainMethod asks a peer what it knows of a trace it owns.
const explainMethod = "/tailsift.cluster.v1.Peer/Explain"

// Explain answers for trace id from its owner: this node's engine if it
// owns the trace (or runs alone), else the owner's, over the peer service.
// Node names the node that answered.
func (c *Cluster) Explain(ctx context.Context, id [16]byte) (decision.Explanation, error) {
	st := c.router.current()
	o := st.ring.Owner(&id)
	if st.ring.Len() == 0 || o == st.self || o < 0 {
		x := c.engine.Explain(id)
		x.Node = c.cfg.NodeName
		return x, nil
	}
	m := st.ring.Members()[o]
	cl, err := c.handoff.client(m.Addr)
	if err != nil {
		return decision.Explanation{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ForwardTimeout)
	defer cancel()
	var resp []byte
	if err := cl.Invoke(ctx, explainMethod, id[:], &resp); err != nil {
		return decision.Explanation{}, fmt.Errorf("asking the trace's owner %s: %w", m.Name, err)
	}
	var x decision.Explanation
	if err := json.Unmarshal(resp, &x); err != nil {
		return decision.Explanation{}, fmt.Errorf("owner %s answered: %w", m.Name, err)
	}
	return x, nil
}

// explainHere answers a peer's Explain call from this node's engine.
func (c *Cluster) explainHere(body []byte) ([]byte, error) {
	if len(body) != 16 {
		return nil, status.Errorf(codes.InvalidArgument, "explain: a trace ID is 16 bytes, got %d", len(body))
	}
	x := c.engine.Explain([16]byte(body))
	x.Node = c.cfg.NodeName
	return json.Marshal(x)
}
