package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/cluster"
	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/export"
	"github.com/tailsift/tailsift/ingest"
	"github.com/tailsift/tailsift/internal/bytesize"
	"github.com/tailsift/tailsift/internal/redact"
	"github.com/tailsift/tailsift/internal/store"
)

// Config is the sampler's configuration: the keys of sampler.yaml, each with
// a flag of the same name (underscores become dashes) that overrides it.
type Config struct {
	OTLPGRPC       string        `yaml:"otlp_grpc"`        // OTLP/gRPC listen address; "" disables
	OTLPHTTP       string        `yaml:"otlp_http"`        // OTLP/HTTP listen address; "" disables
	Admin          string        `yaml:"admin"`            // /metrics and /healthz; "" disables
	Forward        string        `yaml:"forward"`          // stdout | file:PATH (OTLP JSON lines, appended) | host:port (OTLP/gRPC) | http(s)://... (OTLP/HTTP)
	Policies       string        `yaml:"policies"`         // policy file; "" = the embedded policies.example.yaml
	PolicyPoll     time.Duration `yaml:"policy_poll"`      // how often to check the policy file for changes; 0 = only on SIGHUP and POST /-/reload
	DecisionWait   time.Duration `yaml:"decision_wait"`    // decide at the latest this long after a trace's first span
	RootWait       time.Duration `yaml:"root_wait"`        // decide this long after the root span arrived
	MaxTraceAge    time.Duration `yaml:"max_trace_age"`    // hard cap on buffering time
	Shadow         bool          `yaml:"shadow"`           // forward every trace, root spans marked with the decision it would get
	RuleAttribute  bool          `yaml:"rule_attribute"`   // mark kept traces' root spans with the deciding rule
	MemoryLimit    bytesize.Size `yaml:"memory_limit"`     // buffer budget; past it, ingest answers "retry later"
	MaxRequestSize bytesize.Size `yaml:"max_request_size"` // largest accepted OTLP request
	MaxTraceSpans  int           `yaml:"max_trace_spans"`  // a trace reaching this many spans is decided at once
	MaxTraceBytes  bytesize.Size `yaml:"max_trace_bytes"`  // a trace reaching this many span bytes is decided at once
	LogLevel       string        `yaml:"log_level"`        // debug | info | warn | error
	LogFormat      string        `yaml:"log_format"`       // text | json

	// Bounds on the OTLP requests in progress (see ingest.Config).
	MaxInflightBytes      bytesize.Size `yaml:"max_inflight_bytes"`      // their bytes; 0 = memory_limit / 4 (at least room for 4 gRPC uploads and an HTTP request)
	MaxConcurrentRequests int           `yaml:"max_concurrent_requests"` // how many are past their upload, both receivers
	MaxConnections        int           `yaml:"max_connections"`         // open connections per OTLP listener; more wait
	RequestTimeout        time.Duration `yaml:"request_timeout"`         // longest a request may take to arrive

	NodeName         string   `yaml:"node_name"`         // unique in the cluster; "" = <host name>-<gossip port> (the port as bound)
	ClusterBind      string   `yaml:"cluster_bind"`      // gossip listen address (TCP+UDP); "" = no clustering
	ClusterAdvertise string   `yaml:"cluster_advertise"` // gossip address peers use; "" = derived from cluster_bind
	Join             []string `yaml:"join"`              // host:port of peers; a name with several addresses joins them all
	ClusterKeyFile   string   `yaml:"cluster_key_file"`  // gossip encryption key file (16/24/32 bytes, base64)

	DataDir       string        `yaml:"data_dir"`        // Badger store for spill, write-ahead log and decisions; "" = memory only
	DiskLimit     bytesize.Size `yaml:"disk_limit"`      // bound on data_dir; past it spilling stops and wal refuses spans
	Durability    string        `yaml:"durability"`      // none | wal (spans synced to data_dir before the client's OK)
	DataKeyFile   string        `yaml:"data_key_file"`   // encryption key for data_dir (16/24/32 bytes, base64)
	StressRelief  bool          `yaml:"stress_relief"`   // decide the oldest traces early rather than refuse spans when memory (and disk) is full
	GoMemoryLimit bytesize.Size `yaml:"go_memory_limit"` // Go runtime soft memory limit; 0 = memory_limit x 1.5 + 256MiB (unless GOMEMLIMIT is set)

	MaxExportRequestSize bytesize.Size `yaml:"max_export_request_size"` // largest request sent to forward; a span too big for one alone is dropped (oversize)
}

// Durability modes.
const (
	DurabilityNone = "none"
	DurabilityWAL  = "wal"
)

// DefaultConfig returns the defaults: local-only listeners, kept traces to
// stdout, the embedded example policies.
func DefaultConfig() Config {
	ic, dc, bc, cc := ingest.DefaultConfig(), decision.DefaultConfig(), buffer.DefaultConfig(), cluster.DefaultConfig()
	return Config{
		OTLPGRPC:       ic.GRPCAddr,
		OTLPHTTP:       ic.HTTPAddr,
		Admin:          "127.0.0.1:8888",
		Forward:        export.DefaultEndpoint,
		PolicyPoll:     5 * time.Second,
		DecisionWait:   dc.DecisionWait,
		RootWait:       dc.RootWait,
		MaxTraceAge:    dc.MaxTraceAge,
		MemoryLimit:    bytesize.Size(bc.MemoryLimit),
		MaxRequestSize: bytesize.Size(ic.MaxRequestBytes),
		MaxTraceSpans:  bc.MaxTraceSpans,
		MaxTraceBytes:  bytesize.Size(bc.MaxTraceBytes),
		LogLevel:       "info",
		LogFormat:      "text",
		NodeName:       cc.NodeName,
		ClusterBind:    cc.Bind,
		DiskLimit:      bytesize.Size(store.DefaultConfig().DiskLimit),
		Durability:     DurabilityNone,
		StressRelief:   dc.StressRelief,

		MaxExportRequestSize:  export.DefaultMaxRequestBytes,
		MaxConcurrentRequests: ic.MaxConcurrentRequests,
		MaxConnections:        ic.MaxConnections,
		RequestTimeout:        ic.RequestTimeout,
	}
}

// LoadFile applies the keys set in a sampler.yaml file to c. Unknown keys
// and malformed values are errors with their line numbers.
func (c *Config) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // an empty file means all defaults
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Validate reports every problem, naming the key or flag that fixes it.
func (c Config) Validate() error {
	var errs []error
	if c.LogLevel != "debug" && c.LogLevel != "info" && c.LogLevel != "warn" && c.LogLevel != "error" {
		errs = append(errs, fmt.Errorf("log_level (--log-level) must be debug, info, warn or error, got %q", c.LogLevel))
	}
	if c.PolicyPoll < 0 {
		errs = append(errs, fmt.Errorf("policy_poll (--policy-poll) must be >= 0, got %v", c.PolicyPoll))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format (--log-format) must be text or json, got %q", c.LogFormat))
	}
	ic, bc, dc, ec := c.components()
	errs = append(errs, ic.Validate(), bc.Validate(), dc.Validate())
	if err := ec.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("forward (--forward): %w", err))
	}
	if err := c.clusterConfig(nil).Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ClusterBind != "" && c.OTLPGRPC == "" {
		errs = append(errs, errors.New("cluster_bind (--cluster-bind) needs otlp_grpc (--otlp-grpc): peers forward spans over OTLP/gRPC; set cluster_bind to \"\" to run without a cluster"))
	}
	if c.Durability != DurabilityNone && c.Durability != DurabilityWAL {
		errs = append(errs, fmt.Errorf("durability (--durability) must be none or wal, got %q", c.Durability))
	}
	if c.DataDir == "" {
		if c.Durability == DurabilityWAL {
			errs = append(errs, errors.New("durability (--durability) wal needs data_dir (--data-dir): the write-ahead log lives there"))
		}
		if c.DataKeyFile != "" {
			errs = append(errs, errors.New("data_key_file (--data-key-file) needs data_dir (--data-dir)"))
		}
	} else if err := c.storeConfig(nil).Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxInflightBytes < 0 {
		errs = append(errs, fmt.Errorf("max_inflight_bytes (--max-inflight-bytes) must be >= 0 (0: memory_limit / 4), got %d", c.MaxInflightBytes))
	}
	if c.GoMemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("go_memory_limit (--go-memory-limit) must be >= 0, got %d", c.GoMemoryLimit))
	}
	if c.Forward == "file:" {
		errs = append(errs, errors.New("forward (--forward): file: needs a path, e.g. file:/var/lib/tailsift/kept.jsonl"))
	}
	return errors.Join(errs...)
}

// components maps the user-facing keys onto the components' configs.
func (c Config) components() (ingest.Config, buffer.Config, decision.Config, export.Config) {
	ic := ingest.DefaultConfig()
	ic.GRPCAddr, ic.HTTPAddr, ic.MaxRequestBytes = c.OTLPGRPC, c.OTLPHTTP, int(c.MaxRequestSize)
	ic.MaxInflightBytes, ic.MaxConcurrentRequests = c.inflightBytes(), c.MaxConcurrentRequests
	ic.MaxConnections, ic.RequestTimeout = c.MaxConnections, c.RequestTimeout
	bc := buffer.DefaultConfig()
	bc.MemoryLimit, bc.MaxTraceSpans, bc.MaxTraceBytes = int64(c.MemoryLimit), c.MaxTraceSpans, int64(c.MaxTraceBytes)
	dc := decision.DefaultConfig()
	dc.DecisionWait, dc.RootWait, dc.MaxTraceAge = c.DecisionWait, c.RootWait, c.MaxTraceAge
	dc.Shadow, dc.RuleAttribute, dc.StressRelief = c.Shadow, c.RuleAttribute, c.StressRelief
	ec := export.DefaultConfig()
	ec.Endpoint = c.Forward
	ec.MaxRequestBytes, ec.BatchMaxBytes = int(c.MaxExportRequestSize), 0 // 0: the default batch, within MaxRequestBytes
	if c.forwardFile() != "" {
		ec.Endpoint = "stdout" // the node opens the file and passes it as the writer
	}
	return ic, bc, dc, ec
}

// storeConfig maps the data_dir keys; key is read from DataKeyFile.
func (c Config) storeConfig(key []byte) store.Config {
	sc := store.DefaultConfig()
	sc.Dir, sc.DiskLimit, sc.EncryptionKey = c.DataDir, int64(c.DiskLimit), key
	return sc
}

// RuntimeMemoryLimit is the Go runtime's soft memory limit for this
// configuration: GoMemoryLimit, or room for the buffer, its bookkeeping in
// the heap, queues and the store.
func (c Config) RuntimeMemoryLimit() int64 {
	if c.GoMemoryLimit > 0 {
		return int64(c.GoMemoryLimit)
	}
	return int64(c.MemoryLimit)*3/2 + 256<<20
}

// inflightBytes is max_inflight_bytes, or its default (see
// ingest.Config.DefaultInflightBytes).
func (c Config) inflightBytes() int64 {
	if c.MaxInflightBytes > 0 {
		return int64(c.MaxInflightBytes)
	}
	ic := ingest.DefaultConfig()
	ic.GRPCAddr, ic.HTTPAddr, ic.MaxRequestBytes = c.OTLPGRPC, c.OTLPHTTP, int(c.MaxRequestSize)
	return ic.DefaultInflightBytes(int64(c.MemoryLimit))
}

// clusterConfig maps the cluster keys; key is the gossip key read from
// ClusterKeyFile.
func (c Config) clusterConfig(key []byte) cluster.Config {
	cc := cluster.DefaultConfig()
	cc.NodeName, cc.Bind, cc.Advertise, cc.Join, cc.SecretKey = c.NodeName, c.ClusterBind, c.ClusterAdvertise, c.Join, key
	cc.ForwardSync = c.Durability == DurabilityWAL
	return cc
}

// Redactor hides the secrets of the settings that may hold them (the
// forward URL's user, password and secret query values) in logs, errors
// and the command line served by /debug/pprof/cmdline.
func (c Config) Redactor() *redact.Redactor { return redact.New(c.Forward) }

// forwardFile is the path of a file:PATH forward, or "".
func (c Config) forwardFile() string {
	path, ok := strings.CutPrefix(c.Forward, "file:")
	if !ok {
		return ""
	}
	return path
}
