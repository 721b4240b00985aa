package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/node"
)

// A node that leaves hands its buffered traces, with their arrival
// times, and its recent decisions to the new owner, through the cluster's
// interfaces and the node's adapters to the real engines: the new owner
// reports the trace pending since it first arrived at the old one, and
// late spans follow the decisions the old owner made.
func TestHandoffOnLeave(t *testing.T) {
	tt := startThreeTraces(t, 5)
	sk, nodes, sent := tt.sink, tt.nodes, tt.sent
	kept, dropped, pending := tt.kept, tt.dropped, tt.pending
	time.Sleep(time.Second) // the pending trace's age, which the hand-off must carry

	leaving := time.Now()
	if err := nodes[1].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := nodes[1].Stats(); s.HandedOff != 1 || s.Buffered != 0 {
		t.Fatalf("node-1 after leaving: %+v, want the pending trace's span handed off", s)
	}
	if x := explainAt(t, nodes[0], pending); x.Status != "pending" || x.Node != "node-0" || x.Spans != 1 ||
		x.FirstSeen.Before(sent.Add(-time.Second)) || !x.FirstSeen.Before(leaving.Add(-500*time.Millisecond)) {
		t.Errorf("pending trace at its new owner: %+v, want pending since it first arrived (%v), before the hand-off (%v)",
			x, sent, leaving)
	}
	if x := explainAt(t, nodes[0], kept); x.Status != "kept" || x.Node != "node-0" {
		t.Errorf("kept trace at its new owner: %+v", x)
	}
	if x := explainAt(t, nodes[0], dropped); x.Status != "dropped" || x.Node != "node-0" {
		t.Errorf("dropped trace at its new owner: %+v", x)
	}

	exportSpans(t, nodes[0], span(kept, 3, false, false), span(dropped, 2, false, false))
	waitFor(t, func() bool { return len(sk.received(kept)) == 3 }, "the late span of the kept trace at the sink")
	s := nodes[0].Stats()
	if s.DroppedLate != 1 || s.Buffered != 1 {
		t.Errorf("node-0: %+v, want the late span of the dropped trace dropped and the pending one buffered", s)
	}
	if c := nodes[0].Cluster().Stats(); c.HandoffIn != 1 {
		t.Errorf("node-0 cluster: %+v, want one span handed in", c)
	}
	if len(sk.received(dropped)) != 0 || len(sk.received(pending)) != 0 {
		t.Error("spans of the dropped or the pending trace at the sink")
	}
}

// explainAt asks n's explain API about trace id.
func explainAt(t *testing.T, n *node.Node, id [16]byte) decision.Explanation {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/api/v1/traces/%x", n.AdminAddr(), id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var x decision.Explanation
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("explain %x: HTTP %d", id, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&x); err != nil {
		t.Fatal(err)
	}
	return x
}
