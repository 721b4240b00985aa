package bench

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/bytesize"
	"github.com/tailsift/tailsift/node"
)

// Scenario is one benchmark run.
type Scenario struct {
	Workload workload.Config
	// Rate is the offered load in spans/s; 0 means max rate: the schedule
	// is built for MaxRateBudget spans/s and sent as fast as the engine
	// takes it.
	Rate     float64
	Duration time.Duration
	Protocol string // grpc | http
	// Slow is the duration from which a trace counts as slow in the report
	// (the example policy keeps traces of 1s or more).
	Slow time.Duration

	// In-process mode (Targets empty): Nodes sampler nodes configured from
	// Node (listen addresses and forward are set by the run).
	Nodes int
	Node  node.Config
	// DataDir, if set, gives the in-process nodes data directories (the
	// node's data_dir: spill past 62.5% of Node.MemoryLimit, and the
	// write-ahead log with Node.Durability "wal"). Node N gets
	// DataDir/node-N, created for the run and removed after it; DataDir
	// itself is created if missing and kept. A DataDir/node-N that exists
	// already is refused, never reused or deleted. DataDirTemp is a new
	// directory under os.TempDir(), removed after the run. Node.DataDir is
	// ignored: the run sets it per node.
	DataDir string
	// TLS makes the in-process nodes serve OTLP over TLS (the generator
	// verifies them) and, with several nodes, the peer link over mutual
	// TLS, with certificates made for the run. Flag --tls.
	TLS bool
	// Cluster events of an in-process run, as times after the load starts
	// (0: none). JoinAt starts one more node, which joins the cluster;
	// LeaveAt shuts the second node down gracefully (it hands off and
	// leaves; the load moves to the other nodes); KillAt aborts the last
	// node as a crash would. The load never goes to the node to be killed,
	// so only spans forwarded to it are at risk.
	JoinAt, LeaveAt, KillAt time.Duration

	// External mode: the samplers' OTLP addresses (host:port, gRPC or HTTP
	// per Protocol) and where the sink listens for their forwards.
	Targets    []string
	SinkListen string
	// TargetAdmins, if set, are the samplers' admin addresses: their
	// /metrics give the engine's CPU seconds, RSS and buffered spans.
	TargetAdmins []string
	// Drain bounds the wait after the last request for decisions to reach
	// the sink. The run ends as soon as the nodes hold nothing buffered or
	// pending (in-process from their stats, externally from
	// TargetAdmins' /metrics); externally without TargetAdmins, when the
	// sink has been quiet for Quiet. Either way, at the latest when Drain
	// has passed.
	Drain time.Duration
	Quiet time.Duration

	// UntilBuffered, if positive, cuts the send short once the nodes
	// buffer this many bytes: accounted memory plus span bytes spilled to
	// disk (in-process from the nodes, externally from TargetAdmins'
	// tailsift_buffer_memory_bytes + tailsift_buffer_spilled_bytes, read
	// every 250ms). The schedule (Rate x Duration) bounds the load;
	// requests not sent by then are counted in Result.SpansUnsent and
	// their traces, which cannot arrive whole, are left out of the sink's
	// judgement (as undelivered). It drives a node to a state, such as
	// hundreds of MiB spilled, however slowly the machine lets it get
	// there. Flag --until-buffered.
	UntilBuffered bytesize.Size

	// MaxRateBudget is the rate a max-rate schedule is built for.
	MaxRateBudget float64
	// CPUProfile, if set, is where an in-process run writes its CPU
	// profile (goroutines labelled component=engine|generator|sink).
	CPUProfile string
	// Progress, if set, is called about once a second during the run.
	Progress func(Progress)
}

// DataDirTemp as Scenario.DataDir (--data-dir temp) puts the nodes' data
// directories in a new directory under os.TempDir(), removed after the
// run. A directory named "temp" is ./temp.
const DataDirTemp = "temp"

// Progress is the live state of a run.
type Progress struct {
	Elapsed       time.Duration
	MaxRate       bool
	Offered       float64 // spans/s scheduled in the last second
	Accepted      float64 // spans/s the engine accepted in the last second
	Kept          float64 // spans/s arriving at the sink in the last second
	SpansSent     int64
	SpansRefused  int64
	Retries       int64
	BufferedSpans int64
}

// DefaultScenario is what "sampler bench" runs without flags: a modest
// rate every machine sustains, so completeness must be 100%.
func DefaultScenario() Scenario {
	nc := node.DefaultConfig()
	nc.Admin = ""
	return Scenario{
		Workload:      workload.DefaultConfig(),
		Rate:          20_000,
		Duration:      20 * time.Second,
		Protocol:      "grpc",
		Slow:          time.Second,
		Nodes:         1,
		Node:          nc,
		Drain:         nc.DecisionWait + 30*time.Second,
		Quiet:         10 * time.Second,
		MaxRateBudget: 400_000,
	}
}

// Validate reports every problem, naming the flag that fixes it.
func (s Scenario) Validate() error {
	var errs []error
	if s.Rate < 0 {
		errs = append(errs, fmt.Errorf("--rate must be >= 0 (0 = max rate), got %v", s.Rate))
	}
	if s.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration must be positive, got %v", s.Duration))
	}
	if s.Protocol != "grpc" && s.Protocol != "http" {
		errs = append(errs, fmt.Errorf("--protocol must be grpc or http, got %q", s.Protocol))
	}
	if s.Slow <= 0 {
		errs = append(errs, fmt.Errorf("--slow must be positive, got %v", s.Slow))
	}
	if len(s.Targets) == 0 && s.Nodes < 1 {
		errs = append(errs, fmt.Errorf("--nodes must be at least 1, got %d", s.Nodes))
	}
	if (s.JoinAt > 0 || s.LeaveAt > 0 || s.KillAt > 0) && (len(s.Targets) > 0 || s.Nodes < 2) {
		errs = append(errs, errors.New("--join-at, --leave-at and --kill-at need an in-process cluster: --nodes 2 or more"))
	}
	if s.LeaveAt > 0 && s.KillAt > 0 && s.Nodes < 3 {
		errs = append(errs, errors.New("--leave-at with --kill-at needs --nodes 3 or more: they stop different nodes"))
	}
	if s.UntilBuffered < 0 {
		errs = append(errs, fmt.Errorf("--until-buffered must be >= 0 (0 = send the whole schedule), got %d", s.UntilBuffered))
	}
	if s.UntilBuffered > 0 && len(s.Targets) > 0 && len(s.TargetAdmins) == 0 {
		errs = append(errs, errors.New("--until-buffered with --target needs --target-admin: the buffer is read from the samplers' /metrics"))
	}
	if len(s.TargetAdmins) > 0 && len(s.Targets) == 0 {
		errs = append(errs, errors.New("--target-admin goes with --target (external mode)"))
	}
	if len(s.Targets) > 0 && s.SinkListen == "" {
		errs = append(errs, errors.New("--target needs --sink-listen: the address the deployment's --forward points at"))
	}
	if s.Rate == 0 && s.MaxRateBudget <= 0 {
		errs = append(errs, errors.New("max-rate mode needs a positive budget rate"))
	}
	if s.Drain <= 0 {
		errs = append(errs, fmt.Errorf("--drain must be positive, got %v", s.Drain))
	}
	if err := s.Workload.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(s.Targets) == 0 {
		nc := s.Node
		nc.DataDir = ""
		if s.DataDir != "" { // where node 0's directory will be: Validate only needs it set
			nc.DataDir = filepath.Join(s.DataDir, "node-0")
		}
		if err := nc.Validate(); err != nil {
			errs = append(errs, err)
		}
	} else if s.TLS {
		errs = append(errs, errors.New("--tls configures in-process nodes; with --target, set the TLS settings on the samplers"))
	} else if s.DataDir != "" || (s.Node.Durability != "" && s.Node.Durability != node.DurabilityNone) {
		errs = append(errs, errors.New("--data-dir and --durability configure in-process nodes; with --target, set them on the samplers"))
	}
	return errors.Join(errs...)
}
