package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/tailsift/tailsift/node"
)

// The Grafana dashboard and the Prometheus alert rules under deploy/ use
// only metrics the sampler exports: every PromQL expression in them parses,
// and every metric name it selects is in the registry of a running node.
const (
	dashboardFile = "../deploy/grafana/tailsift-dashboard.json"
	alertsFile    = "../deploy/prometheus/tailsift-alerts.yaml"
)

// notSamplerMetrics are names the expressions may use that no sampler
// exports: Prometheus records up for every scrape target.
var notSamplerMetrics = map[string]bool{"up": true}

// promExpr is one PromQL expression of a deploy file.
type promExpr struct {
	where, expr string
}

func TestDashboardMetrics(t *testing.T) {
	exprs := slices.Concat(dashboardExprs(t), alertExprs(t))
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions found in %s and %s", len(exprs), dashboardFile, alertsFile)
	}
	reg := liveRegistry(t)
	for _, e := range exprs {
		names, err := metricNames(e.expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", e.where, err, e.expr)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: selects no metric: %s", e.where, e.expr)
		}
		for _, n := range names {
			if err := reg.check(n); err != nil {
				t.Errorf("%s: %v\n%s", e.where, err, e.expr)
			}
		}
		if err := reg.checkLabels(e.expr); err != nil {
			t.Errorf("%s: %v\n%s", e.where, err, e.expr)
		}
	}
}

// The checker itself: a name the sampler does not export is reported, as
// are a histogram suffix on a counter and an expression that does not parse.
func TestDashboardChecker(t *testing.T) {
	reg := liveRegistry(t)
	for _, c := range []struct {
		expr string
		ok   bool
	}{
		{`sum(rate(tailsift_export_spans_sent_total[5m]))`, true},
		{`histogram_quantile(0.99, sum by (le) (rate(tailsift_decision_delay_seconds_bucket[5m])))`, true},
		{`tailsift_buffer_memory_bytes / tailsift_buffer_memory_limit_bytes`, true},
		{`sum by (reason) (rate(tailsift_export_spans_failed_total[5m]))`, true}, // declared, not observed
		{`up == 0`, true},
		{`sum(rate(tailsift_nonexistent_total[5m]))`, false},
		{`tailsift_buffer_memory_bytes / tailsift_buffer_memory_limit`, false},
		{`rate(tailsift_export_spans_sent_total_bucket[5m])`, false},
		{`rate(tailsift_decision_delay_seconds_bucket{nosuchlabel="x"}[5m])`, false},
		{`{__name__="tailsift_nonexistent_total"}`, false},
		{`sum(rate(tailsift_export_spans_sent_total[5m])`, false}, // does not parse
	} {
		names, err := metricNames(substituteGrafanaVars(c.expr))
		for _, n := range names {
			if err == nil {
				err = reg.check(n)
			}
		}
		if err == nil {
			err = reg.checkLabels(c.expr)
		}
		if (err == nil) != c.ok {
			t.Errorf("%s: error %v, want ok=%v", c.expr, err, c.ok)
		}
	}
}

// grafanaVar matches Grafana's template variables: $name, ${name}, ${name:fmt}, [[name]].
var grafanaVar = regexp.MustCompile(`\$\{[^}]*\}|\$\w+|\[\[\w+\]\]`)

// substituteGrafanaVars replaces every variable with 5m, a duration, which
// is valid where the variables are used: range selectors ($__rate_interval)
// and inside label-matcher strings ($job).
func substituteGrafanaVars(expr string) string {
	return grafanaVar.ReplaceAllString(expr, "5m")
}

// metricNames parses expr with the Prometheus parser and returns the metric
// names of its selectors.
func metricNames(expr string) ([]string, error) {
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				name = m.Value
			}
		}
		if name == "" {
			name = "(a selector without a metric name)"
		}
		names = append(names, name)
		return nil
	})
	return names, nil
}

// dashboardExprs returns the expressions of the dashboard's panels (nested
// rows included) and the metrics of its label_values() variable queries.
func dashboardExprs(t *testing.T) []promExpr {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title     string          `json:"title"`
		Panels    []grafanaPanel  `json:"panels"`
		Templates json.RawMessage `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []promExpr
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no queries", dashboardFile, p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("%s: panel %q query %s has no expr", dashboardFile, p.Title, tg.RefID)
					continue
				}
				out = append(out, promExpr{fmt.Sprintf("%s: panel %q query %s", dashboardFile, p.Title, tg.RefID), substituteGrafanaVars(tg.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)

	var tmpl struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	}
	if err := json.Unmarshal(dash.Templates, &tmpl); err != nil {
		t.Fatalf("%s: templating: %v", dashboardFile, err)
	}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range tmpl.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		where := fmt.Sprintf("%s: variable %s", dashboardFile, v.Name)
		if m := labelValues.FindStringSubmatch(q); m != nil {
			out = append(out, promExpr{where, substituteGrafanaVars(m[1])})
		} else {
			out = append(out, promExpr{where, substituteGrafanaVars(q)}) // query_result(...) and the like: PromQL
		}
	}
	return out
}

type grafanaPanel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's panels
}

// alertExprs returns the expressions of the rule file, checking the shape
// of each rule as Prometheus would load it.
func alertExprs(t *testing.T) []promExpr {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true) // a misspelt key is an error, as in Prometheus
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if len(file.Groups) == 0 {
		t.Fatalf("%s: no rule groups", alertsFile)
	}
	var out []promExpr
	groups, alerts := map[string]bool{}, map[string]bool{}
	for _, g := range file.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("%s: group name %q empty or repeated", alertsFile, g.Name)
		}
		groups[g.Name] = true
		for i, r := range g.Rules {
			where := fmt.Sprintf("%s: group %s rule %d (%s)", alertsFile, g.Name, i+1, r.Alert+r.Record)
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("%s: a rule needs exactly one of alert and record", where)
			}
			if r.Alert != "" {
				if alerts[r.Alert] {
					t.Errorf("%s: alert %s defined twice", where, r.Alert)
				}
				alerts[r.Alert] = true
				if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
					t.Errorf("%s: an alert needs a severity label and a summary annotation", where)
				}
			}
			if r.For != "" {
				if d, err := time.ParseDuration(r.For); err != nil || d <= 0 {
					t.Errorf("%s: for %q is not a positive duration", where, r.For)
				}
			}
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", where)
				continue
			}
			out = append(out, promExpr{where, r.Expr})
		}
	}
	return out
}

// metricRegistry is what a running node exports.
type metricRegistry struct {
	reg      *prometheus.Registry
	families map[string]*dto.MetricFamily
}

// liveRegistry starts a node with every part that registers metrics (data
// directory, cluster, admin), sends it a kept and a dropped trace so that
// vectors observed per decision exist, and gathers its registry.
func liveRegistry(t *testing.T) *metricRegistry {
	t.Helper()
	sk := startSink(t)
	cfg := errorsOnlyConfig(t, sk)
	cfg.Admin, cfg.ClusterBind, cfg.PeerListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.DecisionWait, cfg.RootWait = time.Second, 100*time.Millisecond
	reg := prometheus.NewRegistry()
	n, err := node.New(cfg, node.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	kept, dropped := [16]byte{7, 1}, [16]byte{7, 2}
	exportSpans(t, n, span(kept, 1, true, true), span(dropped, 1, true, false))
	waitFor(t, func() bool { s := n.Stats(); return s.TracesKept == 1 && s.TracesDropped == 1 }, "both traces decided")

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	r := &metricRegistry{reg: reg, families: map[string]*dto.MetricFamily{}}
	for _, mf := range mfs {
		r.families[mf.GetName()] = mf
	}
	for _, want := range []string{"tailsift_decision_traces_total", "tailsift_decision_delay_seconds", "tailsift_store_disk_bytes", "tailsift_cluster_members"} {
		if r.families[want] == nil {
			t.Fatalf("the node does not export %s: the registry is not the one expected", want)
		}
	}
	return r
}

// check reports whether name is a series the sampler exports: a gathered
// family, a _bucket/_sum/_count series of a gathered histogram (or _sum,
// _count of a summary), or the name of a collector registered but not yet
// observed (a vector without children).
func (r *metricRegistry) check(name string) error {
	if notSamplerMetrics[name] || r.families[name] != nil {
		return nil
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if mf := r.families[base]; mf != nil {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				return nil
			case dto.MetricType_SUMMARY:
				if suffix != "_bucket" {
					return nil
				}
			}
			return fmt.Errorf("%s: %s is a %s, it has no %s series", name, base, mf.GetType(), suffix)
		}
	}
	if r.declared(name) {
		return nil
	}
	return fmt.Errorf("the sampler exports no metric %s", name)
}

// declared reports whether a collector of the registry describes a metric
// named name: registering another metric of that name with a different
// help then fails (the registry keeps one help and label set per name).
func (r *metricRegistry) declared(name string) bool {
	if !regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`).MatchString(name) {
		return false
	}
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "dashboards_test probe"})
	if err := r.reg.Register(probe); err != nil {
		return true
	}
	r.reg.Unregister(probe)
	return false
}

// checkLabels reports label matchers on labels a gathered family does not
// have (families not gathered, vectors without children, are not checked).
func (r *metricRegistry) checkLabels(expr string) error {
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(substituteGrafanaVars(expr))
	if err != nil {
		return err
	}
	var errs []string
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		mf := r.families[name]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && mf == nil {
				mf = r.families[base]
			}
		}
		if mf == nil || len(mf.GetMetric()) == 0 {
			return nil
		}
		labels := map[string]bool{"__name__": true, "job": true, "instance": true}
		if strings.HasSuffix(name, "_bucket") {
			labels["le"] = true
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		for _, m := range vs.LabelMatchers {
			if !labels[m.Name] {
				errs = append(errs, fmt.Sprintf("%s has no label %s", name, m.Name))
			}
		}
		return nil
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
