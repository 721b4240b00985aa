package main

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tailsift/tailsift/cluster"
	"github.com/tailsift/tailsift/internal/bytesize"
	"github.com/tailsift/tailsift/node"
	"github.com/tailsift/tailsift/policy"
)

// deployDir holds the deployment examples (Kubernetes manifests, collector
// configuration). TestDeployManifests checks them against the code so that
// they do not rot: the sampler's flags, its config keys, the policy
// language, and the wiring between the files.
const deployDir = "../../deploy"

// deployDoc is one YAML document of a file under deployDir.
type deployDoc struct {
	file  string // relative to deployDir
	index int    // 1-based document number within the file
	node  yaml.Node
	value map[string]any
}

func (d *deployDoc) String() string {
	return fmt.Sprintf("%s (document %d, line %d)", d.file, d.index, d.node.Line)
}

// Kubernetes objects, only the fields the test reads.
type (
	k8sMeta struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	}
	k8sObject struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   k8sMeta           `yaml:"metadata"`
		Data       map[string]string `yaml:"data"`       // ConfigMap, Secret (base64)
		StringData map[string]string `yaml:"stringData"` // Secret
		Spec       yaml.Node         `yaml:"spec"`
		doc        *deployDoc
	}
	k8sService struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []k8sServicePort  `yaml:"ports"`
	}
	k8sServicePort struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort any    `yaml:"targetPort"` // number or port name
		Protocol   string `yaml:"protocol"`
	}
	k8sSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	k8sWorkload struct { // StatefulSet or Deployment
		Replicas    *int        `yaml:"replicas"`
		ServiceName string      `yaml:"serviceName"`
		Selector    k8sSelector `yaml:"selector"`
		Template    struct {
			Metadata k8sMeta    `yaml:"metadata"`
			Spec     k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata k8sMeta `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	}
	k8sPodSpec struct {
		TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               struct {
			RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
		Containers []k8sContainer `yaml:"containers"`
		Volumes    []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			Secret *struct {
				SecretName string `yaml:"secretName"`
			} `yaml:"secret"`
		} `yaml:"volumes"`
	}
	k8sContainer struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []struct {
			Name string `yaml:"name"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
			Protocol      string `yaml:"protocol"`
		} `yaml:"ports"`
		ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
		LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
		Resources      struct {
			Limits map[string]any `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext struct {
			RunAsNonRoot           *bool `yaml:"runAsNonRoot"`
			ReadOnlyRootFilesystem *bool `yaml:"readOnlyRootFilesystem"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			SubPath   string `yaml:"subPath"`
		} `yaml:"volumeMounts"`
	}
	k8sProbe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
	}
	k8sPDB struct {
		MaxUnavailable any         `yaml:"maxUnavailable"`
		MinAvailable   any         `yaml:"minAvailable"`
		Selector       k8sSelector `yaml:"selector"`
	}
)

func TestDeployManifests(t *testing.T) {
	docs := loadDeployDocs(t)
	var objs []*k8sObject
	var collectors []*deployDoc
	for _, d := range docs {
		if _, ok := d.value["kind"]; ok {
			var o k8sObject
			if err := d.node.Decode(&o); err != nil {
				t.Errorf("%v: %v", d, err)
				continue
			}
			o.doc = d
			objs = append(objs, &o)
		} else if d.value["receivers"] != nil && d.value["exporters"] != nil && d.value["service"] != nil {
			collectors = append(collectors, d)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	m := newDeployManifests(t, objs)

	t.Run("Kubernetes", func(t *testing.T) { m.checkObjects(t) })
	t.Run("SamplerArgs", func(t *testing.T) { m.checkSamplerArgs(t) })
	t.Run("SamplerWiring", func(t *testing.T) { m.checkWiring(t) })
	t.Run("SamplerConfig", func(t *testing.T) {
		// LoadFile rejects unknown keys: every key of the example exists.
		p := filepath.Join(t.TempDir(), "sampler.yaml")
		if err := os.WriteFile(p, []byte(m.configText), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := node.DefaultConfig()
		if err := cfg.LoadFile(p); err != nil {
			t.Fatalf("%s (--config %s): %v", m.configWhere, m.flags["config"], err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s (--config %s): invalid configuration:\n%v", m.configWhere, m.flags["config"], err)
		}
	})
	t.Run("Policies", func(t *testing.T) {
		p := m.setting("policies", "policies", "")
		if p == "" {
			t.Fatal("no policy file: neither --policies nor the policies key of sampler.yaml is set (the node would run the embedded example)")
		}
		text, where, err := m.mountedFile(p)
		if err != nil {
			t.Fatalf("policies %s: %v", p, err)
		}
		if _, err := policy.Parse(where, []byte(text)); err != nil {
			t.Fatalf("policies %s:\n%v", p, err)
		}
	})
	t.Run("Collector", func(t *testing.T) {
		if len(collectors) == 0 {
			t.Fatalf("no OpenTelemetry Collector configuration (a document with receivers, exporters and service) under %s", deployDir)
		}
		for _, c := range collectors {
			m.checkCollector(t, c)
		}
	})
}

// loadDeployDocs parses every .yaml/.yml file under deployDir, each
// document of multi-document files.
func loadDeployDocs(t *testing.T) []*deployDoc {
	t.Helper()
	var docs []*deployDoc
	files := 0
	err := filepath.WalkDir(deployDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || (filepath.Ext(p) != ".yaml" && filepath.Ext(p) != ".yml") {
			return nil
		}
		files++
		rel, _ := filepath.Rel(deployDir, p)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 1; ; i++ {
			d := &deployDoc{file: rel, index: i}
			err := dec.Decode(&d.node)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("%s: %v", rel, err) // the yaml error names the line
				break
			}
			if err := d.node.Decode(&d.value); err != nil {
				t.Errorf("%v: %v", d, err)
				continue
			}
			if d.value != nil { // an empty document (a trailing ---) is allowed
				docs = append(docs, d)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no YAML files under %s", deployDir)
	}
	if t.Failed() {
		t.FailNow()
	}
	return docs
}

// deployManifests is the Kubernetes side: the objects, the sampler's
// workload and container, and its arguments.
type deployManifests struct {
	objs      []*k8sObject
	workload  *k8sObject
	wl        k8sWorkload
	container *k8sContainer
	services  map[string]*k8sService // by name
	flags     map[string]string      // --name → value, as written in the container args
	defined   map[string]bool        // flags of "sampler run" → takes a value
	argErrs   []string               // problems of the container args

	configText  string         // the sampler.yaml the container reads (--config)
	configWhere string         // its ConfigMap and key
	config      map[string]any // configText, leniently decoded
}

func newDeployManifests(t *testing.T, objs []*k8sObject) *deployManifests {
	t.Helper()
	m := &deployManifests{objs: objs, services: map[string]*k8sService{}, flags: map[string]string{}}
	for _, o := range objs {
		switch o.Kind {
		case "Service":
			var s k8sService
			if err := o.Spec.Decode(&s); err != nil {
				t.Fatalf("%v: %v", o.doc, err)
			}
			m.services[o.Metadata.Name] = &s
		case "StatefulSet", "Deployment":
			var w k8sWorkload
			if err := o.Spec.Decode(&w); err != nil {
				t.Fatalf("%v: %v", o.doc, err)
			}
			for i := range w.Template.Spec.Containers {
				c := &w.Template.Spec.Containers[i]
				if !strings.Contains(c.Image, "tailsift") {
					continue
				}
				if m.container != nil {
					t.Fatalf("%v: a second sampler container (image %s); the test expects one", o.doc, c.Image)
				}
				m.workload, m.wl, m.container = o, w, c
			}
		}
	}
	if m.container == nil {
		t.Fatal("no StatefulSet or Deployment with a tailsift image container")
	}
	m.defined = samplerRunFlags(t)
	m.parseArgs()

	if m.flags["config"] == "" {
		t.Fatalf("%v: the sampler container has no --config", m.workload.doc)
	}
	text, where, err := m.mountedFile(m.flags["config"])
	if err != nil {
		t.Fatalf("--config %s: %v", m.flags["config"], err)
	}
	m.configText, m.configWhere = text, where
	if err := yaml.Unmarshal([]byte(text), &m.config); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return m
}

// samplerRunFlags returns the flags "sampler run" defines (name → takes a
// value), read from its -h output, whose lines "  -name [type]" list them;
// bool flags have no type.
func samplerRunFlags(t *testing.T) map[string]bool {
	t.Helper()
	var stderr bytes.Buffer
	runNode([]string{"-h"}, io.Discard, &stderr)
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([\w-]+)( \S+)?`).FindAllStringSubmatch(stderr.String(), -1) {
		defined[m[1]] = m[2] != ""
	}
	if !defined["config"] || len(defined) < 5 {
		t.Fatalf("cannot read the flags from \"sampler run -h\":\n%s", stderr.String())
	}
	return defined
}

// parseArgs reads the container args the way "sampler run" parses them
// into m.flags, recording each problem in m.argErrs. An unknown flag is
// taken to have a value if the next arg is not a flag.
func (m *deployManifests) parseArgs() {
	args := m.container.Args
	if len(args) == 0 || args[0] != "run" {
		m.argErrs = append(m.argErrs, fmt.Sprintf("args must start with \"run\", got %q", args))
		return
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "-" || a == "--" || !strings.HasPrefix(a, "-") {
			m.argErrs = append(m.argErrs, fmt.Sprintf("argument %q is not a flag (sampler run takes no positional arguments)", a))
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, ok := m.defined[name]
		if !ok {
			m.argErrs = append(m.argErrs, fmt.Sprintf("--%s is not a flag of \"sampler run\" (it has: %s)", name, strings.Join(slices.Sorted(maps.Keys(m.defined)), ", ")))
			takesValue = i+1 < len(args) && !strings.HasPrefix(args[i+1], "-")
		}
		switch {
		case takesValue && !hasVal:
			if i+1 == len(args) {
				m.argErrs = append(m.argErrs, fmt.Sprintf("--%s needs a value", name))
				continue
			}
			i++
			val = args[i]
		case !hasVal:
			val = "true"
		}
		m.flags[name] = val
	}
}

// checkSamplerArgs lets "sampler run" itself parse the args (with -h
// appended, so it stops before starting anything) and checks every $(VAR)
// names a variable of the container.
func (m *deployManifests) checkSamplerArgs(t *testing.T) {
	for _, e := range m.argErrs {
		t.Errorf("%v: container %s: %s", m.workload.doc, m.container.Name, e)
	}
	if len(m.argErrs) == 0 {
		// Every arg is a known flag with its value, so the -h appended is
		// parsed as the help flag (never as a value): runNode stops there,
		// after parsing the values, before it starts anything.
		var stderr bytes.Buffer
		runNode(slices.Concat(m.container.Args[1:], []string{"-h"}), io.Discard, &stderr)
		if out := stderr.String(); !strings.HasPrefix(out, "Usage of sampler run:") {
			first, _, _ := strings.Cut(out, "\n")
			t.Errorf("%v: sampler run rejects the args %q: %s", m.workload.doc, m.container.Args, first)
		}
	}

	env := map[string]bool{}
	for _, e := range m.container.Env {
		env[e.Name] = true
	}
	ref := regexp.MustCompile(`(\$+)\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, a := range m.container.Args {
		for _, r := range ref.FindAllStringSubmatch(a, -1) {
			if len(r[1])%2 == 0 { // $$(X) is a literal $(X)
				continue
			}
			if !env[r[2]] {
				t.Errorf("%v: arg %q refers to $(%s), which is not in the container's env, so Kubernetes passes it on unexpanded", m.workload.doc, a, r[2])
			}
		}
	}
}

// setting is the effective value of a setting: the flag, else the
// sampler.yaml key, else def. A YAML list is joined with commas, as the
// flag takes it.
func (m *deployManifests) setting(flag, key, def string) string {
	if v, ok := m.flags[flag]; ok {
		return v
	}
	switch v := m.config[key].(type) {
	case nil:
		return def
	case []any:
		s := make([]string, len(v))
		for i, e := range v {
			s[i] = fmt.Sprint(e)
		}
		return strings.Join(s, ",")
	default:
		return fmt.Sprint(v)
	}
}

// checkWiring checks that the pieces fit: listeners the pods' ports and
// probes reach, the cluster settings, the shutdown budget, memory, security.
func (m *deployManifests) checkWiring(t *testing.T) {
	def := node.DefaultConfig()
	c, spec := m.container, &m.wl.Template.Spec
	where := m.workload.doc

	// Listeners: not loopback (peers, the Services and the kubelet come in
	// on the pod IP), each a container port.
	listen := func(flag, key, def string, protocols ...string) (port string) {
		addr := m.setting(flag, key, def)
		if addr == "" {
			t.Errorf("%s (--%s) is disabled; the deployment needs it", key, flag)
			return ""
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("%s (--%s) %q: %v", key, flag, addr, err)
			return ""
		}
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			t.Errorf("%s (--%s) %q listens on loopback only: unreachable from other pods and the kubelet; use 0.0.0.0%s", key, flag, addr, addr[len(host):])
		}
		for _, proto := range protocols {
			if m.containerPort(port, proto) == "" {
				t.Errorf("%v: %s (--%s) port %s/%s is not a port of container %s", where, key, flag, port, proto, c.Name)
			}
		}
		return port
	}
	listen("otlp-grpc", "otlp_grpc", def.OTLPGRPC, "TCP")
	listen("otlp-http", "otlp_http", def.OTLPHTTP, "TCP")
	adminPort := listen("admin", "admin", def.Admin, "TCP")
	gossipPort := listen("cluster-bind", "cluster_bind", def.ClusterBind, "TCP", "UDP")

	// Probes on the admin port.
	for _, p := range []struct {
		name, path string
		probe      *k8sProbe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			t.Errorf("%v: container %s has no %s with httpGet %s", where, c.Name, p.name, p.path)
		case p.probe.HTTPGet.Path != p.path:
			t.Errorf("%v: %s path %q, want %s", where, p.name, p.probe.HTTPGet.Path, p.path)
		case adminPort != "" && m.containerPort(fmt.Sprint(p.probe.HTTPGet.Port), "TCP") != adminPort:
			t.Errorf("%v: %s port %v is not the admin port %s", where, p.name, p.probe.HTTPGet.Port, adminPort)
		}
	}

	// Cluster: a unique node name per pod, an advertised address with the
	// gossip port, a join address through the headless Service.
	replicas := 1
	if m.wl.Replicas != nil {
		replicas = *m.wl.Replicas
	}
	if name := m.setting("node-name", "node_name", ""); replicas > 1 && !strings.Contains(name, "$(") {
		t.Errorf("%v: node name %q is the same in every pod; it must be unique: --node-name $(POD_NAME)", where, name)
	}
	adv := m.setting("cluster-advertise", "cluster_advertise", "")
	if _, port, err := net.SplitHostPort(adv); err != nil || port != gossipPort {
		t.Errorf("%v: cluster advertise address %q must be <pod IP>:%s, e.g. --cluster-advertise $(POD_IP):%s", where, adv, gossipPort, gossipPort)
	}
	joined := false
	for _, j := range strings.Split(m.setting("join", "join", ""), ",") {
		host, port, err := net.SplitHostPort(strings.TrimSpace(j))
		if err != nil {
			continue
		}
		labels := strings.Split(host, ".")
		s := m.services[labels[0]]
		if s != nil && s.ClusterIP == "None" && port == gossipPort &&
			(len(labels) == 1 || labels[1] == m.namespaceOf(labels[0])) {
			joined = true
		}
	}
	if !joined {
		t.Errorf("%v: join %q names no headless Service of the manifests at the gossip port %s", where, m.setting("join", "join", ""), gossipPort)
	}

	// Shutdown: the grace period must outlast the hand-off.
	timeout, err := time.ParseDuration(m.setting("shutdown-timeout", "", "30s"))
	switch {
	case err != nil:
		t.Errorf("--shutdown-timeout: %v", err)
	case spec.TerminationGracePeriodSeconds == nil:
		t.Errorf("%v: no terminationGracePeriodSeconds; the default 30s does not exceed --shutdown-timeout %v", where, timeout)
	case time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second <= timeout:
		t.Errorf("%v: terminationGracePeriodSeconds %d must exceed --shutdown-timeout %v, or the kubelet kills nodes mid hand-off",
			where, *spec.TerminationGracePeriodSeconds, timeout)
	}

	// Memory: the buffer budget well under the container limit.
	limit, err := k8sQuantity(fmt.Sprint(c.Resources.Limits["memory"]))
	if err != nil {
		t.Errorf("%v: container %s memory limit: %v", where, c.Name, err)
	} else if ml, err := bytesize.Parse(m.setting("memory-limit", "memory_limit", def.MemoryLimit.String())); err != nil {
		t.Errorf("memory_limit: %v", err)
	} else if r := float64(ml) / float64(limit); r < 0.4 || r > 0.75 {
		t.Errorf("memory_limit %v is %.0f%% of the container memory limit %v; keep it at about 60%%", ml, 100*r, c.Resources.Limits["memory"])
	}

	// Security: non-root, read-only root filesystem.
	if !(deref(c.SecurityContext.RunAsNonRoot) || c.SecurityContext.RunAsNonRoot == nil && deref(spec.SecurityContext.RunAsNonRoot)) {
		t.Errorf("%v: container %s does not set runAsNonRoot: true", where, c.Name)
	}
	if !deref(c.SecurityContext.ReadOnlyRootFilesystem) {
		t.Errorf("%v: container %s does not set readOnlyRootFilesystem: true", where, c.Name)
	}

	// The gossip key is a mounted Secret.
	if kf := m.setting("cluster-key-file", "cluster_key_file", ""); kf == "" {
		t.Errorf("no gossip encryption key: set cluster_key_file (--cluster-key-file)")
	} else if text, where, err := m.mountedFile(kf); err != nil {
		t.Errorf("cluster_key_file %s: %v", kf, err)
	} else {
		// The example Secret is published: it must hold a placeholder that
		// no node accepts, never a working key.
		p := filepath.Join(t.TempDir(), "gossip.key")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := cluster.ReadKeyFile(p); err == nil {
			t.Errorf("%s holds a valid gossip key; an example must hold a placeholder that nodes reject", where)
		}
	}

	// Admin (reload, profiles, explain) is for operators: no Service
	// exposes its port, and its endpoints need the token of a mounted
	// Secret that no node accepts as published.
	adminAddr := m.setting("admin", "admin", "")
	if _, port, err := net.SplitHostPort(adminAddr); err == nil {
		for name, svc := range m.services {
			for _, p := range svc.Ports {
				if m.containerPort(fmt.Sprint(p.TargetPort), p.Protocol) == port || strconv.Itoa(p.Port) == port && p.TargetPort == nil {
					t.Errorf("Service %s exposes the admin port %s: keep admin off the Services (port-forward, or scrape the pods)", name, port)
				}
			}
		}
	}
	if tf := m.setting("admin-token-file", "admin_token_file", ""); tf == "" {
		t.Errorf("admin listens on %s without admin_token_file (--admin-token-file)", adminAddr)
	} else if text, where, err := m.mountedFile(tf); err != nil {
		t.Errorf("admin_token_file %s: %v", tf, err)
	} else if len(strings.TrimSpace(text)) >= 16 {
		t.Errorf("%s holds a usable admin token; an example must hold a placeholder that nodes reject", where)
	}
}

func deref(b *bool) bool { return b != nil && *b }

// containerPort resolves a port number or name of the sampler container
// with the protocol ("" for TCP) to its number, or "".
func (m *deployManifests) containerPort(port, proto string) string {
	if proto == "" {
		proto = "TCP"
	}
	for _, p := range m.container.Ports {
		pp := p.Protocol
		if pp == "" {
			pp = "TCP"
		}
		if pp == proto && (p.Name == port || strconv.Itoa(p.ContainerPort) == port) {
			return strconv.Itoa(p.ContainerPort)
		}
	}
	return ""
}

func (m *deployManifests) namespaceOf(service string) string {
	for _, o := range m.objs {
		if o.Kind == "Service" && o.Metadata.Name == service {
			return o.Metadata.Namespace
		}
	}
	return ""
}

// mountedFile returns the text of the file at p in the sampler container:
// the ConfigMap or Secret key a volume mount puts there.
func (m *deployManifests) mountedFile(p string) (text, where string, err error) {
	var volume, key, mountPath string
	for _, vm := range m.container.VolumeMounts {
		switch {
		case vm.SubPath != "" && p == vm.MountPath:
			volume, key = vm.Name, vm.SubPath
		case vm.SubPath == "" && path.Dir(p) == path.Clean(vm.MountPath):
			volume, key = vm.Name, path.Base(p)
		default:
			continue
		}
		mountPath = vm.MountPath
		break
	}
	if volume == "" {
		return "", "", fmt.Errorf("no volume of container %s is mounted there", m.container.Name)
	}
	for _, v := range m.wl.Template.Spec.Volumes {
		if v.Name != volume {
			continue
		}
		switch {
		case v.ConfigMap != nil:
			o := m.object("ConfigMap", v.ConfigMap.Name)
			if o == nil {
				return "", "", fmt.Errorf("volume %s (at %s) is ConfigMap %s, which is not in the manifests", volume, mountPath, v.ConfigMap.Name)
			}
			text, ok := o.Data[key]
			if !ok {
				return "", "", fmt.Errorf("%v: ConfigMap %s has no key %s", o.doc, o.Metadata.Name, key)
			}
			return text, fmt.Sprintf("%s: ConfigMap %s: %s", o.doc.file, o.Metadata.Name, key), nil
		case v.Secret != nil:
			o := m.object("Secret", v.Secret.SecretName)
			if o == nil {
				return "", "", fmt.Errorf("volume %s (at %s) is Secret %s, of which the manifests have no example", volume, mountPath, v.Secret.SecretName)
			}
			where := fmt.Sprintf("%s: Secret %s: %s", o.doc.file, o.Metadata.Name, key)
			if text, ok := o.StringData[key]; ok {
				return text, where, nil
			}
			if b64, ok := o.Data[key]; ok {
				b, err := base64.StdEncoding.DecodeString(b64)
				if err != nil {
					return "", "", fmt.Errorf("%s: %v", where, err)
				}
				return string(b), where, nil
			}
			return "", "", fmt.Errorf("%v: Secret %s has no key %s", o.doc, o.Metadata.Name, key)
		default:
			return "", "", fmt.Errorf("volume %s (at %s) is neither a ConfigMap nor a Secret", volume, mountPath)
		}
	}
	return "", "", fmt.Errorf("volume mount %s names no volume of the pod", volume)
}

func (m *deployManifests) object(kind, name string) *k8sObject {
	for _, o := range m.objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	return nil
}

// checkObjects checks every Kubernetes object and how they refer to each
// other.
func (m *deployManifests) checkObjects(t *testing.T) {
	kinds := map[string]bool{}
	namespace := ""
	for _, o := range m.objs {
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Errorf("%v: a Kubernetes object needs apiVersion, kind and metadata.name (got %q, %q, %q)", o.doc, o.APIVersion, o.Kind, o.Metadata.Name)
		}
		kinds[o.Kind] = true
		if o.Kind == "Namespace" {
			namespace = o.Metadata.Name
		}
	}
	for _, k := range []string{"ConfigMap", "Service", "PodDisruptionBudget"} {
		if !kinds[k] {
			t.Errorf("no %s in the manifests", k)
		}
	}
	if !kinds["StatefulSet"] && !kinds["Deployment"] {
		t.Error("no StatefulSet or Deployment in the manifests")
	}
	if namespace != "" {
		for _, o := range m.objs {
			if o.Kind != "Namespace" && o.Metadata.Namespace != namespace {
				t.Errorf("%v: %s %s is in namespace %q, not %q", o.doc, o.Kind, o.Metadata.Name, o.Metadata.Namespace, namespace)
			}
		}
	}

	podLabels := m.wl.Template.Metadata.Labels
	selects := func(sel map[string]string) bool {
		for k, v := range sel {
			if podLabels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	if !selects(m.wl.Selector.MatchLabels) {
		t.Errorf("%v: selector %v does not match the pod template labels %v", m.workload.doc, m.wl.Selector.MatchLabels, podLabels)
	}

	headless := false
	for _, o := range m.objs {
		switch o.Kind {
		case "Service":
			s := m.services[o.Metadata.Name]
			if s.ClusterIP == "None" && s.PublishNotReadyAddresses {
				headless = true
			}
			if !selects(s.Selector) {
				t.Errorf("%v: Service %s selector %v does not select the sampler pods (labels %v)", o.doc, o.Metadata.Name, s.Selector, podLabels)
			}
			for _, p := range s.Ports {
				target := fmt.Sprint(p.TargetPort)
				if p.TargetPort == nil {
					target = strconv.Itoa(p.Port)
				}
				if m.containerPort(target, p.Protocol) == "" {
					t.Errorf("%v: Service %s port %s (%d) targets %s, not a %s port of container %s", o.doc, o.Metadata.Name, p.Name, p.Port, target, cmp.Or(p.Protocol, "TCP"), m.container.Name)
				}
			}
		case "PodDisruptionBudget":
			var pdb k8sPDB
			if err := o.Spec.Decode(&pdb); err != nil {
				t.Errorf("%v: %v", o.doc, err)
				continue
			}
			if !selects(pdb.Selector.MatchLabels) {
				t.Errorf("%v: PodDisruptionBudget %s selector %v does not select the sampler pods (labels %v)", o.doc, o.Metadata.Name, pdb.Selector.MatchLabels, podLabels)
			}
			if pdb.MaxUnavailable == nil && pdb.MinAvailable == nil {
				t.Errorf("%v: PodDisruptionBudget %s sets neither maxUnavailable nor minAvailable", o.doc, o.Metadata.Name)
			}
		}
	}
	if !headless {
		t.Error("no headless Service for the peers (clusterIP: None, publishNotReadyAddresses: true): starting pods could not find each other")
	}
	if m.workload.Kind == "StatefulSet" {
		if s := m.services[m.wl.ServiceName]; s == nil || s.ClusterIP != "None" {
			t.Errorf("%v: serviceName %q is not a headless Service of the manifests", m.workload.doc, m.wl.ServiceName)
		}
	}

	// Every volume mount has its volume, every volume its ConfigMap or Secret.
	vols := map[string]bool{}
	for _, v := range m.wl.Template.Spec.Volumes {
		vols[v.Name] = true
		if v.ConfigMap != nil && m.object("ConfigMap", v.ConfigMap.Name) == nil {
			t.Errorf("%v: volume %s: ConfigMap %s is not in the manifests", m.workload.doc, v.Name, v.ConfigMap.Name)
		}
		if v.Secret != nil && m.object("Secret", v.Secret.SecretName) == nil {
			t.Errorf("%v: volume %s: the manifests have no example of Secret %s", m.workload.doc, v.Name, v.Secret.SecretName)
		}
	}
	claims := map[string]bool{} // a StatefulSet's per-pod volumes: writable
	for _, c := range m.wl.VolumeClaimTemplates {
		vols[c.Metadata.Name], claims[c.Metadata.Name] = true, true
	}
	for _, vm := range m.container.VolumeMounts {
		if !vols[vm.Name] {
			t.Errorf("%v: volume mount %s names no volume of the pod", m.workload.doc, vm.Name)
		}
	}
	// The data directory is on a claimed volume: the root filesystem is
	// read-only, and an emptyDir would not survive the pod.
	if dir := m.setting("data-dir", "data_dir", ""); dir != "" {
		onClaim := false
		for _, vm := range m.container.VolumeMounts {
			if claims[vm.Name] && (dir == vm.MountPath || strings.HasPrefix(dir, strings.TrimSuffix(vm.MountPath, "/")+"/")) {
				onClaim = true
			}
		}
		if !onClaim {
			t.Errorf("%v: data_dir %s is not on a volume from volumeClaimTemplates", m.workload.doc, dir)
		}
	}
}

// checkCollector checks an OpenTelemetry Collector configuration: OTLP in,
// traces out to the Tailsift Service with retries and a queue.
func (m *deployManifests) checkCollector(t *testing.T, d *deployDoc) {
	section := func(name string) map[string]any {
		s, _ := d.value[name].(map[string]any)
		if s == nil {
			t.Errorf("%v: no %s section", d, name)
		}
		return s
	}
	typeOf := func(id string) string { typ, _, _ := strings.Cut(id, "/"); return typ }
	receivers, processors, exporters := section("receivers"), section("processors"), section("exporters")
	traces, _ := dig(d.value, "service", "pipelines", "traces").(map[string]any)
	if traces == nil {
		t.Fatalf("%v: no service.pipelines.traces", d)
	}
	list := func(key string) []string {
		var ids []string
		for _, v := range asList(traces[key]) {
			ids = append(ids, fmt.Sprint(v))
		}
		return ids
	}

	// Every component of the traces pipeline is defined.
	for _, s := range []struct {
		key  string
		defs map[string]any
	}{{"receivers", receivers}, {"processors", processors}, {"exporters", exporters}} {
		for _, id := range list(s.key) {
			if _, ok := s.defs[id]; !ok {
				t.Errorf("%v: the traces pipeline uses %s %s, which is not defined", d, strings.TrimSuffix(s.key, "s"), id)
			}
		}
	}
	if !slices.ContainsFunc(list("receivers"), func(id string) bool { return typeOf(id) == "otlp" }) {
		t.Errorf("%v: the traces pipeline has no otlp receiver", d)
	}
	if !slices.ContainsFunc(list("processors"), func(id string) bool { return typeOf(id) == "batch" }) {
		t.Errorf("%v: the traces pipeline has no batch processor", d)
	}

	// The exporter to Tailsift: OTLP/gRPC to a Service of the manifests.
	found := false
	for _, id := range list("exporters") {
		if typ := typeOf(id); typ != "otlp" && typ != "otlp_grpc" {
			continue
		}
		exp, ok := exporters[id].(map[string]any)
		if !ok {
			continue // reported above if undefined
		}
		endpoint := fmt.Sprint(exp["endpoint"])
		if i := strings.Index(endpoint, ":///"); i >= 0 { // dns:///host:port
			endpoint = endpoint[i+len(":///"):]
		}
		host, port, err := net.SplitHostPort(endpoint)
		if err != nil {
			t.Errorf("%v: exporter %s endpoint %q: %v", d, id, exp["endpoint"], err)
			continue
		}
		labels := strings.Split(host, ".")
		s := m.services[labels[0]]
		if s == nil || len(labels) > 1 && labels[1] != m.namespaceOf(labels[0]) {
			t.Errorf("%v: exporter %s endpoint %q is not a Service of the manifests (want <service>.<namespace>.svc...)", d, id, exp["endpoint"])
			continue
		}
		if !slices.ContainsFunc(s.Ports, func(p k8sServicePort) bool { return strconv.Itoa(p.Port) == port }) {
			t.Errorf("%v: exporter %s endpoint %q: Service %s has no port %s", d, id, exp["endpoint"], labels[0], port)
		}
		found = true
		if dig(exp, "tls", "insecure") != true {
			t.Errorf("%v: exporter %s: tls.insecure must be true (Tailsift serves plaintext OTLP/gRPC)", d, id)
		}
		for _, k := range []string{"retry_on_failure", "sending_queue"} {
			if dig(exp, k, "enabled") != true {
				t.Errorf("%v: exporter %s: %s.enabled must be true", d, id, k)
			}
		}
		if v, ok := dig(exp, "retry_on_failure", "max_elapsed_time").(string); ok {
			if dur, err := time.ParseDuration(v); err != nil || dur <= 0 {
				t.Errorf("%v: exporter %s: retry_on_failure.max_elapsed_time %q is not a positive duration", d, id, v)
			}
		}
	}
	if !found {
		t.Errorf("%v: the traces pipeline has no otlp exporter whose endpoint is a Tailsift Service of the manifests", d)
	}
}

// dig follows keys through nested maps; nil if a key is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// k8sQuantity parses a Kubernetes memory quantity (2Gi, 1500M, 2147483648).
func k8sQuantity(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("not a memory quantity: %q", s)
	}
	return int64(f * float64(mult)), nil
}
