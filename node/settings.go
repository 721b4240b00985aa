package node

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/cluster"
	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/export"
	"github.com/tailsift/tailsift/ingest"
	"github.com/tailsift/tailsift/internal/bytesize"
	"github.com/tailsift/tailsift/internal/store"
	"github.com/tailsift/tailsift/internal/wal"
)

// Setting is one key of sampler.yaml: the one place it is declared. From
// the table of Settings come DefaultConfig, the flags of "sampler run" and
// its --help, and the README's configuration table; Config's yaml tags,
// which the YAML decoder needs, are held to it by a test.
//
// Help texts are a little markup: `code` is code (plain in --help), and
// {key} refers to another setting, printed as its flag in --help and as its
// key in the README.
type Setting struct {
	// Key is the sampler.yaml key.
	Key string
	// Flag is the flag's name without dashes: Key with dashes for
	// underscores.
	Flag string
	// Arg names the flag's value in --help ("address", "size"); "" for a
	// bool.
	Arg string

	help        string
	defaultHelp string // the default in words, where the zero value means "derived"
	def         any    // the default value, of the field's type
	field       func(*Config) any
	setDefault  func(*Config)
	copy        func(dst, src *Config)
}

// settingType lists the types a setting's field may have, its kinds:
// string, duration, bool, int, size and list. Each has its YAML decoding
// (bytesize.Size its UnmarshalYAML) and its flag (bound in cmd/sampler).
type settingType interface {
	string | time.Duration | bool | int | bytesize.Size | []string
}

// setting declares the setting key, stored in the field that field points
// to, with default def.
func setting[T settingType](key string, field func(*Config) *T, def T, help string) Setting {
	s := Setting{
		Key:        key,
		Flag:       strings.ReplaceAll(key, "_", "-"),
		help:       help,
		def:        def,
		field:      func(c *Config) any { return field(c) },
		setDefault: func(c *Config) { *field(c) = def },
		copy:       func(dst, src *Config) { *field(dst) = *field(src) },
	}
	switch any(def).(type) {
	case string:
		s.Arg = "string"
	case time.Duration:
		s.Arg = "duration"
	case int:
		s.Arg = "int"
	case bytesize.Size:
		s.Arg = "size"
	case []string:
		s.Arg = "list"
	}
	return s
}

// arg names the flag's value in --help.
func (s Setting) arg(name string) Setting { s.Arg = name; return s }

// defaultIs describes a default the zero value stands for (EnsureDefaults
// or the component derives it).
func (s Setting) defaultIs(text string) Setting { s.defaultHelp = text; return s }

// Settings returns the settings in the order --help and the README list
// them. Defaults come from the components' DefaultConfig where a component
// owns the setting, so each default is written once.
//
// Adding a setting: a field of Config with the key as its yaml tag, an
// entry here, and its use (usually a line of components or clusterConfig,
// and the check in the component's Validate, naming "key (--flag)"); then
// regenerate the README's table (see TestREADMEConfigTable).
func Settings() []Setting {
	ic, bc, dc, cc := ingest.DefaultConfig(), buffer.DefaultConfig(), decision.DefaultConfig(), cluster.DefaultConfig()
	return []Setting{
		setting("otlp_grpc", func(c *Config) *string { return &c.OTLPGRPC }, ic.GRPCAddr,
			"OTLP/gRPC listen address; empty disables").arg("address"),
		setting("otlp_http", func(c *Config) *string { return &c.OTLPHTTP }, ic.HTTPAddr,
			"OTLP/HTTP listen address (`POST /v1/traces`); empty disables").arg("address"),
		setting("admin", func(c *Config) *string { return &c.Admin }, "127.0.0.1:8888",
			"listen address of `/metrics` (Prometheus), `/healthz` (alive), `/readyz` (joined, no other node with its name, "+
				"not overloaded, not stopping; a 503 says why), `/debug/pprof/` (`cmdline` with secrets redacted) and "+
				"`POST /-/reload`; empty disables").arg("address"),
		setting("admin_token_file", func(c *Config) *string { return &c.AdminTokenFile }, "",
			"file with a bearer token (at least 16 bytes) that every {admin} endpoint but `/healthz` and `/readyz` "+
				"then requires (`Authorization: Bearer ...`); reread when it changes. Without it, an {admin} address "+
				"other than loopback is logged as a warning").arg("file"),
		setting("audit_log", func(c *Config) *string { return &c.AuditLog }, "",
			"where security events go, as JSON lines: `stderr` or a file (appended to, 0600); empty: nowhere. "+
				"The effective configuration at start (secrets redacted), policy reloads (hashes before and after, "+
				"who asked), admin requests and refusals, reloads of certificates and tokens, members joining and "+
				"leaving, refused peer calls").arg("destination"),
		setting("forward", func(c *Config) *string { return &c.Forward }, export.DefaultEndpoint,
			"where kept traces go: `stdout` (OTLP JSON lines), `file:PATH` (the same, appended to a file), "+
				"`host:port` (OTLP/gRPC, plaintext) or `http(s)://[user:password@]host:port[/path]` (OTLP/HTTP protobuf, "+
				"path `/v1/traces` if none); the user, the password and the values of secret-looking query parameters "+
				"(`api_key`, `token`, ...) are redacted in logs, errors and `/debug/pprof/cmdline`").arg("destination"),
		setting("forward_tls_ca_file", func(c *Config) *string { return &c.ForwardTLSCAFile }, "",
			"PEM CAs that {forward}'s certificate must chain to; empty: the system's. gRPC {forward} destinations use TLS "+
				"unless on loopback or {forward_insecure}; https:// always does. Reread when it changes").arg("file"),
		setting("forward_tls_cert_file", func(c *Config) *string { return &c.ForwardTLSCertFile }, "",
			"PEM client certificate presented to {forward} (mutual TLS), with {forward_tls_key_file}; reread when it changes").arg("file"),
		setting("forward_tls_key_file", func(c *Config) *string { return &c.ForwardTLSKeyFile }, "",
			"PEM private key of {forward_tls_cert_file}").arg("file"),
		setting("forward_tls_server_name", func(c *Config) *string { return &c.ForwardTLSServerName }, "",
			"the name {forward}'s certificate must carry, if not its host's").arg("name").defaultIs("{forward}'s host"),
		setting("forward_insecure", func(c *Config) *bool { return &c.ForwardInsecure }, false,
			"send to {forward} in plaintext although it is not on loopback (gRPC host:port, or an http:// URL, which is "+
				"refused otherwise)"),
		setting("forward_headers", func(c *Config) *[]string { return &c.ForwardHeaders }, nil,
			"headers sent with every export to {forward}, `name=value` (flag: comma-separated; YAML: a list); a value "+
				"`${env:VAR}` is read from the environment and `${file:/path}` from a file (keep API keys there, not in "+
				"this file); values are redacted in logs").arg("list"),
		setting("forward_compression", func(c *Config) *string { return &c.ForwardCompression }, CompressionAuto,
			"`gzip`, `none`, or `auto`: gzip unless {forward} is on loopback").arg("mode"),
		setting("auth_api_keys_file", func(c *Config) *string { return &c.AuthAPIKeysFile }, "",
			"file of `tenant key` lines (keys of 16 bytes or more): an OTLP request must carry one (see {auth_header}) "+
				"unless another auth_ method admits it; refused requests get UNAUTHENTICATED / 401 before their body is "+
				"read. Reread when it changes").arg("file"),
		setting("auth_header", func(c *Config) *string { return &c.AuthHeader }, "authorization",
			"the header that carries the API key: `authorization` reads `Bearer <key>`, any other header's value is the "+
				"key (e.g. `x-api-key`)").arg("name"),
		setting("auth_jwt_jwks_file", func(c *Config) *string { return &c.AuthJWTJWKSFile }, "",
			"JWKS whose keys sign the bearer tokens (RS256, ES256 or EdDSA, with an expiry) that admit OTLP requests; "+
				"reread when it changes").arg("file"),
		setting("auth_jwt_jwks_url", func(c *Config) *string { return &c.AuthJWTJWKSURL }, "",
			"the JWKS fetched from a URL instead, again every 5 minutes").arg("url"),
		setting("auth_jwt_issuer", func(c *Config) *string { return &c.AuthJWTIssuer }, "",
			"the `iss` tokens must carry; empty: any").arg("issuer"),
		setting("auth_jwt_audience", func(c *Config) *string { return &c.AuthJWTAudience }, "",
			"an `aud` tokens must carry; empty: any").arg("audience"),
		setting("auth_jwt_tenant_claim", func(c *Config) *string { return &c.AuthJWTTenantClaim }, "tenant",
			"the claim that names a token's tenant; a token without it is refused").arg("claim"),
		setting("auth_cert_tenant", func(c *Config) *string { return &c.AuthCertTenant }, "",
			"with {tls_client_ca_file}, admit clients by their certificate, the tenant being its `subject` (common "+
				"name) or `san` (first DNS name)").arg("field"),
		setting("tls_cert_file", func(c *Config) *string { return &c.TLSCertFile }, "",
			"PEM certificate (chain) the OTLP listeners and {admin} serve TLS with, with {tls_key_file}; reread when "+
				"it changes (checked at most once a second, on a handshake), so certificates rotate without a restart; "+
				"empty: plaintext").arg("file"),
		setting("tls_key_file", func(c *Config) *string { return &c.TLSKeyFile }, "",
			"PEM private key of {tls_cert_file}").arg("file"),
		setting("tls_client_ca_file", func(c *Config) *string { return &c.TLSClientCAFile }, "",
			"PEM CAs: when set, every client of the OTLP listeners and {admin} must present a certificate they issued "+
				"(mutual TLS); reread like {tls_cert_file}").arg("file"),
		setting("tls_min_version", func(c *Config) *string { return &c.TLSMinVersion }, "1.2",
			"oldest TLS version accepted: `1.2` or `1.3`").arg("version"),
		setting("policies", func(c *Config) *string { return &c.Policies }, "",
			"policy file; reloaded when it changes (checked every {policy_poll}), on SIGHUP and on `POST /-/reload`").
			arg("file").defaultIs("the embedded `policies.example.yaml`"),
		setting("policy_poll", func(c *Config) *time.Duration { return &c.PolicyPoll }, 5*time.Second,
			"how often to check the policy file for changes; `0`: only on SIGHUP and `POST /-/reload`"),
		setting("decision_wait", func(c *Config) *time.Duration { return &c.DecisionWait }, dc.DecisionWait,
			"decide a trace at the latest this long after its first span"),
		setting("root_wait", func(c *Config) *time.Duration { return &c.RootWait }, dc.RootWait,
			"decide a trace this long after its root span arrived"),
		setting("max_trace_age", func(c *Config) *time.Duration { return &c.MaxTraceAge }, dc.MaxTraceAge,
			"never buffer a trace longer than this after its first span"),
		setting("shadow", func(c *Config) *bool { return &c.Shadow }, dc.Shadow,
			"forward every trace, marking each root span with the decision the policies took "+
				"(`tailsift.sampling.decision`, `tailsift.sampling.rule`): policies can be tried on live traffic without losing data"),
		setting("rule_attribute", func(c *Config) *bool { return &c.RuleAttribute }, dc.RuleAttribute,
			"mark the root span of kept traces with the deciding rule (`tailsift.sampling.rule`)"),
		setting("memory_limit", func(c *Config) *bytesize.Size { return &c.MemoryLimit }, bytesize.Size(bc.MemoryLimit),
			`buffer budget (span bytes and bookkeeping); past it, ingest answers "retry later"`),
		setting("max_request_size", func(c *Config) *bytesize.Size { return &c.MaxRequestSize }, bytesize.Size(ic.MaxRequestBytes),
			"largest OTLP request accepted, compressed or decompressed"),
		setting("max_export_request_size", func(c *Config) *bytesize.Size { return &c.MaxExportRequestSize }, bytesize.Size(export.DefaultMaxRequestBytes),
			"largest OTLP request sent to {forward} (what gRPC servers and most backends accept); a trace bigger than that "+
				"is split across requests, and a span too big for a request alone is dropped and counted "+
				"(`tailsift_export_spans_failed_total{reason=\"oversize\"}`)"),
		setting("max_trace_spans", func(c *Config) *int { return &c.MaxTraceSpans }, bc.MaxTraceSpans,
			"a trace reaching this many spans is decided at once by the policies (a runaway trace cannot hold the buffer); "+
				"its later spans follow the decision; counted in `tailsift_decision_trace_limit_traces_total`"),
		setting("max_trace_bytes", func(c *Config) *bytesize.Size { return &c.MaxTraceBytes }, bytesize.Size(bc.MaxTraceBytes),
			"a trace reaching this size of span bytes is decided at once, as with {max_trace_spans}"),
		setting("max_inflight_bytes", func(c *Config) *bytesize.Size { return &c.MaxInflightBytes }, 0,
			"bytes of the OTLP requests in progress on both receivers: bodies as received, decompressed and transcoded, "+
				"plus their scan index; a gRPC request counts {max_request_size} + 96KiB until its message has arrived. "+
				"Past it clients are told to retry").
			defaultIs("{memory_limit} / 4, at least room for 4 gRPC uploads and an HTTP request (5 x {max_request_size} + 384KiB); " +
				"if set, at least 2 x ({max_request_size} + 96KiB)"),
		setting("max_concurrent_requests", func(c *Config) *int { return &c.MaxConcurrentRequests }, ic.MaxConcurrentRequests,
			"OTLP requests past their upload (scanned, handed to the buffer) on both receivers; past it clients are told to retry"),
		setting("max_connections", func(c *Config) *int { return &c.MaxConnections }, ic.MaxConnections,
			"open connections per OTLP listener; further connections wait in the kernel's accept queue until one closes"),
		setting("request_timeout", func(c *Config) *time.Duration { return &c.RequestTimeout }, ic.RequestTimeout,
			"longest an OTLP request may take to arrive; a stalled client holds its share of {max_inflight_bytes} no longer"),
		setting("log_level", func(c *Config) *string { return &c.LogLevel }, "info",
			"`debug`, `info`, `warn` or `error`").arg("level"),
		setting("log_format", func(c *Config) *string { return &c.LogFormat }, "text",
			"`text` or `json` (logs always go to stderr)").arg("format"),
		setting("node_name", func(c *Config) *string { return &c.NodeName }, cc.NodeName,
			"this node's name, unique in the cluster; the default is unique for several nodes on one host and stable "+
				"across restarts on the same port (in Kubernetes the host name is the pod name). Two nodes with one name "+
				"cannot form a cluster: both report not ready").
			arg("name").defaultIs("`<host name>-<gossip port>`"),
		setting("cluster_bind", func(c *Config) *string { return &c.ClusterBind }, cc.Bind,
			"gossip listen address (TCP and UDP); empty runs one node without gossip").arg("address"),
		setting("cluster_advertise", func(c *Config) *string { return &c.ClusterAdvertise }, cc.Advertise,
			"gossip address peers reach this node on; peers reach its peer link ({peer_listen}) at this host unless {peer_listen} names one").
			arg("address").defaultIs("from {cluster_bind}"),
		setting("join", func(c *Config) *[]string { return &c.Join }, cc.Join,
			"`host:port` of nodes to join (flag: comma-separated; YAML: a list); a name with several addresses "+
				"(a Kubernetes headless service) joins them all and is resolved again every 30 s").arg("host:port"),
		setting("peer_listen", func(c *Config) *string { return &c.PeerListen }, "",
			"the peer link's listen address: peers forward spans, hand off traces and ask for explanations there, "+
				"never on the OTLP listeners (a client cannot pose as a peer there); each node on a host needs its own").
			arg("address").defaultIs("{cluster_bind}'s host, port " + cluster.DefaultPeerPort),
		setting("peer_tls_cert_file", func(c *Config) *string { return &c.PeerTLSCertFile }, "",
			"PEM certificate this node serves its peer link with and presents to peers (mutual TLS), with "+
				"{peer_tls_key_file} and {peer_tls_ca_file}; reread when it changes").arg("file"),
		setting("peer_tls_key_file", func(c *Config) *string { return &c.PeerTLSKeyFile }, "",
			"PEM private key of {peer_tls_cert_file}").arg("file"),
		setting("peer_tls_ca_file", func(c *Config) *string { return &c.PeerTLSCAFile }, "",
			"PEM CAs of the cluster's peer certificates: a peer without a certificate they issued cannot call "+
				"this node, and this node trusts no other").arg("file"),
		setting("peer_tls_server_name", func(c *Config) *string { return &c.PeerTLSServerName }, "",
			"the name peers' certificates carry, if not their peer link's host (one name for all, e.g. "+
				"`tailsift-peer`)").arg("name").defaultIs("the peer's host"),
		setting("insecure_cluster", func(c *Config) *bool { return &c.InsecureCluster }, false,
			"allow gossip and the peer link on addresses other than loopback without {cluster_key_file} "+
				"(anyone who reaches them can join, and be handed traces); logged as a warning"),
		setting("cluster_key_file", func(c *Config) *string { return &c.ClusterKeyFile }, "",
			"file with the gossip encryption key: 16, 24 or 32 bytes, base64 (`head -c 32 /dev/urandom | base64`)").arg("file"),
		setting("data_dir", func(c *Config) *string { return &c.DataDir }, "",
			"directory of the embedded store (Badger): span bytes past the memory budget spill there, and the "+
				"write-ahead log and recent decisions live there; empty: memory only").arg("directory"),
		setting("disk_limit", func(c *Config) *bytesize.Size { return &c.DiskLimit }, bytesize.Size(store.DefaultConfig().DiskLimit),
			`bound on {data_dir}; past it spilling stops and, with `+"`wal`"+`, ingest answers "retry later"`),
		setting("durability", func(c *Config) *string { return &c.Durability }, DurabilityNone,
			"`none`: a crash loses buffered spans; `wal`: spans are synced to {data_dir} before the client's OK "+
				"(one fsync per group of concurrent requests), and a restart recovers them").arg("mode"),
		setting("disk_timeout", func(c *Config) *time.Duration { return &c.DiskTimeout }, wal.DefaultConfig().SyncTimeout,
			"longest a request waits for {data_dir}'s disk (the `wal` fsync, a store write); past it the request is refused "+
				"with \"retry later\" and the node reports not ready until the disk answers"),
		setting("data_key_file", func(c *Config) *string { return &c.DataKeyFile }, "",
			"file with the key that encrypts everything in {data_dir} (AES: Badger's encryption at rest, AES-GCM per write-ahead record): "+
				"16, 24 or 32 bytes, base64 (`head -c 32 /dev/urandom | base64`)").arg("file"),
		setting("stress_relief", func(c *Config) *bool { return &c.StressRelief }, dc.StressRelief,
			"when the buffer is nearly full and spilling cannot help, decide the oldest traces early instead of refusing spans"),
		setting("go_memory_limit", func(c *Config) *bytesize.Size { return &c.GoMemoryLimit }, 0,
			"the Go runtime's soft memory limit; the `GOMEMLIMIT` variable wins").
			defaultIs("{memory_limit} x 1.5 + 256MiB"),
	}
}

// Field returns a pointer to the setting's field of c: a *string,
// *time.Duration, *bool, *int, *bytesize.Size or *[]string.
func (s Setting) Field(c *Config) any { return s.field(c) }

// Copy sets the setting's field of dst to its value in src.
func (s Setting) Copy(dst, src *Config) { s.copy(dst, src) }

// Help is the setting's help as plain text, for --help.
func (s Setting) Help() string { return render(s.help, false) }

// Default is the default as --help prints it after "default", or "" when
// it is a zero value (an empty string or list, false, 0), which --help
// does not mention.
func (s Setting) Default() string {
	switch {
	case s.defaultHelp != "":
		return render(s.defaultHelp, false)
	case isZero(s.def):
		return ""
	}
	if v, ok := s.def.(string); ok {
		return strconv.Quote(v) // as flag.PrintDefaults quotes strings
	}
	return formatValue(s.def)
}

// markdownRow is the setting's row of the README's configuration table.
func (s Setting) markdownRow() string {
	def := "none" // an empty string or list
	if s.defaultHelp != "" {
		def = render(s.defaultHelp, true)
	} else if v := formatValue(s.def); v != "" {
		def = "`" + v + "`"
	}
	return "| `" + s.Key + "` / `--" + s.Flag + "` | " + def + " | " + render(s.help, true) + " |"
}

// markdownTable is the README's configuration table.
func markdownTable() string {
	var b strings.Builder
	b.WriteString("| key / flag | default | meaning |\n|---|---|---|\n")
	for _, s := range Settings() {
		b.WriteString(s.markdownRow() + "\n")
	}
	return b.String()
}

// formatValue prints a setting's value as --help and the README show it,
// durations without their trailing zero units ("5m", not "5m0s").
func formatValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case time.Duration:
		s := v.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	case bytesize.Size:
		return v.String()
	case []string:
		return strings.Join(v, ",")
	}
	panic(fmt.Sprintf("BUG: a setting of type %T", v))
}

// isZero reports whether v, a setting's value, is its type's zero.
func isZero(v any) bool {
	switch v := v.(type) {
	case []string:
		return len(v) == 0
	case string:
		return v == ""
	case bool:
		return !v
	case int:
		return v == 0
	case time.Duration:
		return v == 0
	case bytesize.Size:
		return v == 0
	}
	panic(fmt.Sprintf("BUG: a setting of type %T", v))
}

// render turns help markup into plain text (md false) or Markdown for a
// table cell: `code` spans lose their backquotes in plain text, and {key}
// outside them becomes the setting's flag or its key. An unknown {key} is
// left as it is, for the test that looks for them.
func render(text string, md bool) string {
	var b strings.Builder
	inCode := false
	for i := 0; i < len(text); i++ {
		switch ch := text[i]; {
		case ch == '`':
			inCode = !inCode
			if md {
				b.WriteByte(ch)
			}
		case ch == '{' && !inCode:
			end := strings.IndexByte(text[i:], '}')
			if end < 0 {
				b.WriteByte(ch)
				continue
			}
			key := text[i+1 : i+end]
			if !isKey(key) {
				b.WriteByte(ch)
				continue
			}
			if md {
				b.WriteString("`" + key + "`")
			} else {
				b.WriteString("--" + strings.ReplaceAll(key, "_", "-"))
			}
			i += end
		case ch == '|' && md:
			b.WriteString(`\|`) // a cell's pipe
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// isKey reports whether key is a setting's key.
func isKey(key string) bool {
	for _, s := range Settings() {
		if s.Key == key {
			return true
		}
	}
	return false
}
