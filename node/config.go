package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	"github.com/tailsift/tailsift/internal/spillfile"
	"github.com/tailsift/tailsift/internal/store"
	"github.com/tailsift/tailsift/internal/tlsconfig"
	"github.com/tailsift/tailsift/internal/wal"
)

// Config is the sampler's configuration: the keys of sampler.yaml, each
// with a flag that overrides it. Settings declares each field's key, flag,
// default and help; the yaml tags repeat the key for the decoder, and
// TestSettingsMatchConfig holds them to the table.
type Config struct {
	OTLPGRPC       string        `yaml:"otlp_grpc"`
	OTLPHTTP       string        `yaml:"otlp_http"`
	Admin          string        `yaml:"admin"`
	Forward        string        `yaml:"forward"`
	Policies       string        `yaml:"policies"`
	PolicyPoll     time.Duration `yaml:"policy_poll"`
	DecisionWait   time.Duration `yaml:"decision_wait"`
	RootWait       time.Duration `yaml:"root_wait"`
	MaxTraceAge    time.Duration `yaml:"max_trace_age"`
	Shadow         bool          `yaml:"shadow"`
	RuleAttribute  bool          `yaml:"rule_attribute"`
	MemoryLimit    bytesize.Size `yaml:"memory_limit"`
	MaxRequestSize bytesize.Size `yaml:"max_request_size"`
	MaxTraceSpans  int           `yaml:"max_trace_spans"`
	MaxTraceBytes  bytesize.Size `yaml:"max_trace_bytes"`
	LogLevel       string        `yaml:"log_level"`
	LogFormat      string        `yaml:"log_format"`

	// Bounds on the OTLP requests in progress (see ingest.Config).
	MaxInflightBytes      bytesize.Size `yaml:"max_inflight_bytes"` // 0: derived, see EnsureDefaults
	MaxConcurrentRequests int           `yaml:"max_concurrent_requests"`
	MaxConnections        int           `yaml:"max_connections"`
	RequestTimeout        time.Duration `yaml:"request_timeout"`

	NodeName          string   `yaml:"node_name"` // "": cluster.New derives it
	ClusterBind       string   `yaml:"cluster_bind"`
	ClusterAdvertise  string   `yaml:"cluster_advertise"`
	Join              []string `yaml:"join"`
	ClusterKeyFile    string   `yaml:"cluster_key_file"`
	PeerListen        string   `yaml:"peer_listen"` // "": cluster_bind's host at cluster.DefaultPeerPort
	PeerTLSCertFile   string   `yaml:"peer_tls_cert_file"`
	PeerTLSKeyFile    string   `yaml:"peer_tls_key_file"`
	PeerTLSCAFile     string   `yaml:"peer_tls_ca_file"`
	PeerTLSServerName string   `yaml:"peer_tls_server_name"`
	InsecureCluster   bool     `yaml:"insecure_cluster"`

	DataDir       string        `yaml:"data_dir"`
	DiskLimit     bytesize.Size `yaml:"disk_limit"`
	Durability    string        `yaml:"durability"`
	DataKeyFile   string        `yaml:"data_key_file"`
	DiskTimeout   time.Duration `yaml:"disk_timeout"`
	StressRelief  bool          `yaml:"stress_relief"`
	GoMemoryLimit bytesize.Size `yaml:"go_memory_limit"` // 0: derived, see EnsureDefaults

	MaxExportRequestSize bytesize.Size `yaml:"max_export_request_size"`

	// How kept traces are sent to forward (see forwardClient).
	ForwardTLSCAFile     string   `yaml:"forward_tls_ca_file"`
	ForwardTLSCertFile   string   `yaml:"forward_tls_cert_file"`
	ForwardTLSKeyFile    string   `yaml:"forward_tls_key_file"`
	ForwardTLSServerName string   `yaml:"forward_tls_server_name"`
	ForwardInsecure      bool     `yaml:"forward_insecure"`
	ForwardHeaders       []string `yaml:"forward_headers"`
	ForwardCompression   string   `yaml:"forward_compression"`

	AdminTokenFile string `yaml:"admin_token_file"`
	AuditLog       string `yaml:"audit_log"`

	// Client authentication on the OTLP listeners (see authConfig).
	AuthAPIKeysFile    string `yaml:"auth_api_keys_file"`
	AuthHeader         string `yaml:"auth_header"`
	AuthJWTJWKSFile    string `yaml:"auth_jwt_jwks_file"`
	AuthJWTJWKSURL     string `yaml:"auth_jwt_jwks_url"`
	AuthJWTIssuer      string `yaml:"auth_jwt_issuer"`
	AuthJWTAudience    string `yaml:"auth_jwt_audience"`
	AuthJWTTenantClaim string `yaml:"auth_jwt_tenant_claim"`
	AuthCertTenant     string `yaml:"auth_cert_tenant"`

	// TLS of the client-facing listeners: OTLP gRPC and HTTP, and admin.
	TLSCertFile     string `yaml:"tls_cert_file"`
	TLSKeyFile      string `yaml:"tls_key_file"`
	TLSClientCAFile string `yaml:"tls_client_ca_file"`
	TLSMinVersion   string `yaml:"tls_min_version"`
}

// listenerTLS is the TLS of the client-facing listeners.
func (c Config) listenerTLS() tlsconfig.Server {
	return tlsconfig.Server{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, ClientCAFile: c.TLSClientCAFile, MinVersion: c.TLSMinVersion}
}

// Durability modes.
const (
	DurabilityNone = "none"
	DurabilityWAL  = "wal"
)

// DefaultConfig returns the defaults of Settings: local-only listeners,
// kept traces to stdout, the embedded example policies.
func DefaultConfig() Config {
	var c Config
	for _, s := range Settings() {
		s.setDefault(&c)
	}
	return c
}

// EnsureDefaults returns c with the settings whose zero means "derived from
// the others" filled in: max_inflight_bytes (see
// ingest.Config.DefaultInflightBytes) and go_memory_limit (room for the
// buffer, its bookkeeping in the heap, queues and the store). The other
// zeros are either errors or mean what they say, and DefaultConfig holds
// their defaults.
func (c Config) EnsureDefaults() Config {
	if c.MaxInflightBytes == 0 {
		ic := ingest.DefaultConfig()
		ic.GRPCAddr, ic.HTTPAddr, ic.MaxRequestBytes = c.OTLPGRPC, c.OTLPHTTP, int(c.MaxRequestSize)
		c.MaxInflightBytes = bytesize.Size(ic.DefaultInflightBytes(int64(c.MemoryLimit)))
	}
	if c.GoMemoryLimit == 0 {
		c.GoMemoryLimit = c.MemoryLimit*3/2 + 256<<20
	}
	return c
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

// Validate reports every problem of c.EnsureDefaults(), the configuration
// New runs with, naming the key and flag that fix it.
func (c Config) Validate() error {
	c = c.EnsureDefaults()
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
	// A negative max_inflight_bytes is reported below, once: judge the
	// receivers as if it were unset.
	rc := c
	rc.MaxInflightBytes = max(rc.MaxInflightBytes, 0)
	ic, bc, dc, ec := rc.components()
	errs = append(errs, ic.Validate(), bc.Validate(), dc.Validate())
	if err := ec.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("forward (--forward): %w", err))
	}
	if err := c.clusterConfig(nil).Validate(); err != nil {
		errs = append(errs, err)
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
	} else if c.Durability == DurabilityWAL {
		if err := c.walConfig(nil).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("durability wal: %w", err))
		}
	}
	if c.MaxInflightBytes < 0 {
		errs = append(errs, fmt.Errorf("max_inflight_bytes (--max-inflight-bytes) must be >= 0 (0: memory_limit / 4), got %d", c.MaxInflightBytes))
	}
	if c.GoMemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("go_memory_limit (--go-memory-limit) must be >= 0, got %d", c.GoMemoryLimit))
	}
	if err := c.validateForwardClient(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateClusterSecurity(); err != nil {
		errs = append(errs, err)
	}
	if err := c.authConfig().Validate("auth_"); err != nil {
		errs = append(errs, err)
	}
	if c.AuthCertTenant != "" && c.TLSClientCAFile == "" {
		errs = append(errs, errors.New("auth_cert_tenant (--auth-cert-tenant) needs tls_client_ca_file (--tls-client-ca-file): the tenant is read from a verified client certificate"))
	}
	if err := c.listenerTLS().Validate("tls_"); err != nil {
		errs = append(errs, err)
	}
	if c.Forward == "file:" {
		errs = append(errs, errors.New("forward (--forward): file: needs a path, e.g. file:/var/lib/tailsift/kept.jsonl"))
	}
	return errors.Join(errs...)
}

// components maps the user-facing keys onto the components' configs.
func (c Config) components() (ingest.Config, buffer.Config, decision.Config, export.Config) {
	c = c.EnsureDefaults()
	ic := ingest.DefaultConfig()
	ic.GRPCAddr, ic.HTTPAddr, ic.MaxRequestBytes = c.OTLPGRPC, c.OTLPHTTP, int(c.MaxRequestSize)
	ic.MaxInflightBytes, ic.MaxConcurrentRequests = int64(c.MaxInflightBytes), c.MaxConcurrentRequests
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
	sc.WriteTimeout = c.DiskTimeout
	return sc
}

// spillConfig maps the keys of data_dir/spill.
func (c Config) spillConfig() spillfile.Config {
	pc := spillfile.DefaultConfig()
	pc.Dir, pc.DiskLimit = filepath.Join(c.DataDir, "spill"), int64(c.DiskLimit)
	pc.FileSize = min(pc.FileSize, pc.DiskLimit/8)
	return pc
}

// walConfig maps the write-ahead log's keys; key is read from DataKeyFile.
func (c Config) walConfig(key []byte) wal.Config {
	wc := wal.DefaultConfig()
	wc.Dir, wc.MaxBytes, wc.EncryptionKey = filepath.Join(c.DataDir, "wal"), int64(c.DiskLimit), key
	wc.SyncTimeout = c.DiskTimeout
	// Segments are the unit of deletion: at least eight fit the budget.
	wc.SegmentSize = min(wc.SegmentSize, wc.MaxBytes/8)
	return wc
}

// RuntimeMemoryLimit is the Go runtime's soft memory limit for this
// configuration: go_memory_limit, or its default (see EnsureDefaults).
func (c Config) RuntimeMemoryLimit() int64 { return int64(c.EnsureDefaults().GoMemoryLimit) }

// clusterConfig maps the cluster keys; key is the gossip key read from
// ClusterKeyFile.
func (c Config) clusterConfig(key []byte) cluster.Config {
	cc := cluster.DefaultConfig()
	cc.NodeName, cc.Bind, cc.Advertise, cc.Join, cc.SecretKey = c.NodeName, c.ClusterBind, c.ClusterAdvertise, c.Join, key
	cc.PeerListen, cc.PeerMaxRequestBytes = c.PeerListen, int(c.MaxRequestSize)
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
