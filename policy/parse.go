package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ruleNameRE is the syntax of rule names: they become Prometheus label
// values and appear in decision records, so keep them plain.
var ruleNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// Load reads and parses the policy file at path. See [Parse].
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a policy file; name (usually the file's path)
// prefixes every error message.
//
// YAML that does not parse gives the YAML library's error, which carries its
// line, prefixed by name. A well-formed file that is not a valid policy set
// gives [Errors]: every problem found, ordered by line, each naming the rule
// and the key that fixes it. Unknown keys are errors.
func Parse(name string, data []byte) (*Set, error) {
	p := &parser{file: name}
	root, err := p.document(data)
	if err != nil {
		return nil, err
	}
	var s *Set
	if root != nil {
		s = p.set(root)
	}
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		return nil, p.errs
	}
	return s, nil
}

// parser collects every problem of one file instead of stopping at the first.
type parser struct {
	file string
	errs Errors
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// document returns the root node of the file's single YAML document, or nil
// after recording why there is none.
func (p *parser) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, `empty policy file: want "rules:" and optionally "default:" (see policies.example.yaml)`)
			return nil, nil
		}
		return nil, fmt.Errorf("%s: %w", p.file, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.errorf(extra.Line, `a second YAML document: a policy file holds exactly one (remove the "---")`)
	case !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("%s: %w", p.file, err)
	}
	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		p.errorf(doc.Line, `empty policy file: want "rules:" and optionally "default:" (see policies.example.yaml)`)
		return nil, nil
	}
	return resolve(doc.Content[0]), nil
}

// set compiles the top-level mapping.
func (p *parser) set(root *yaml.Node) *Set {
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, `top level: must be a mapping with keys "rules" and "default", got %s`, describe(root))
		return nil
	}
	s := &Set{}
	var rules *yaml.Node
	for _, kv := range p.pairs(root, "") {
		switch k, v := kv.key.Value, kv.value; k {
		case "rules":
			rules = v
		case "default":
			s.keepByDefault = p.defaultAction(v)
		default:
			p.errorf(kv.key.Line, "unknown key %q; valid keys: rules, default", k)
		}
	}
	if rules == nil {
		p.errorf(root.Line, `rules: missing; list the rules, or write "rules: []" to give every trace the default`)
	} else {
		s.rules = p.rules(rules)
	}
	return s
}

func (p *parser) defaultAction(v *yaml.Node) (keep bool) {
	if v.Kind == yaml.ScalarNode && !isNull(v) {
		switch v.Value {
		case "keep":
			return true
		case "drop":
			return false
		}
	}
	p.errorf(v.Line, "default: got %s; valid values: keep, drop", describe(v))
	return false
}

func (p *parser) rules(n *yaml.Node) []rule {
	if isNull(n) { // "rules:" with every rule commented out
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, "rules: must be a list of rules, got %s", describe(n))
		return nil
	}
	seen := make(map[string]int) // rule name -> line
	out := make([]rule, 0, len(n.Content))
	for i, item := range n.Content {
		if r, ok := p.rule(i, resolve(item), seen); ok {
			out = append(out, r)
		}
	}
	return out
}

// rule compiles the i-th rule; ok is false if it had any problem.
func (p *parser) rule(i int, n *yaml.Node, seen map[string]int) (r rule, ok bool) {
	label := fmt.Sprintf("rules[%d]", i)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, `%s: must be a mapping with "name" and "type", got %s`, label, describe(n))
		return rule{}, false
	}
	if v := lookup(n, "name"); v != nil && v.Kind == yaml.ScalarNode && !isNull(v) && v.Value != "" {
		label += fmt.Sprintf(" %q", v.Value)
	}
	before := len(p.errs)
	rn := &ruleNode{label: label, node: n, fields: make(map[string]*yaml.Node)}
	pairs := p.pairs(n, label+": ")
	for _, kv := range pairs {
		rn.fields[kv.key.Value] = kv.value
	}

	if v, ok := rn.fields["name"]; !ok {
		p.errorf(n.Line, "%s: name: missing (required: unique, [a-z0-9_-]+)", label)
	} else {
		r.name = p.ruleName(label, v, seen)
	}
	var rt *ruleType
	if v, ok := rn.fields["type"]; !ok {
		p.errorf(n.Line, "%s: type: missing; valid types: %s", label, ruleTypeNames())
	} else if v.Kind != yaml.ScalarNode || isNull(v) {
		p.errorf(v.Line, "%s: type: got %s; valid types: %s", label, describe(v), ruleTypeNames())
	} else if rt = lookupRuleType(v.Value); rt == nil {
		p.errorf(v.Line, "%s: type: unknown type %q; valid types: %s", label, v.Value, ruleTypeNames())
	}
	for _, kv := range pairs {
		switch k := kv.key.Value; {
		case k == "name" || k == "type":
		case !isParam(k):
			if rt != nil {
				p.errorf(kv.key.Line, "%s: unknown key %q; valid keys for type %s: %s", label, k, rt.name, ruleKeys(rt))
			} else {
				p.errorf(kv.key.Line, "%s: unknown key %q; valid keys: %s", label, k, ruleKeys(nil))
			}
		case rt != nil && !rt.takes(k):
			p.errorf(kv.key.Line, "%s: %s: not a parameter of type %s (%s)", label, k, rt.name, rt.describeParams())
		}
	}
	if rt != nil {
		r.cond, r.act = rt.compile(p, rn)
	} else { // still report bad values, so one run shows every problem
		for _, kv := range pairs {
			p.paramSyntax(label, kv.key.Value, kv.value)
		}
	}
	return r, len(p.errs) == before
}

func (p *parser) ruleName(label string, v *yaml.Node, seen map[string]int) string {
	switch {
	case v.Kind != yaml.ScalarNode || isNull(v) || v.Value == "":
		p.errorf(v.Line, "%s: name: got %s; want a unique name matching [a-z0-9_-]+", label, describe(v))
		return ""
	case !ruleNameRE.MatchString(v.Value):
		p.errorf(v.Line, "%s: name: %q is invalid: use only a-z, 0-9, '_' and '-' (names become metric label values)", label, v.Value)
	case v.Value == DefaultRule:
		p.errorf(v.Line, "%s: name: %q is reserved for the decision of the \"default\" key", label, v.Value)
	default:
		if first, dup := seen[v.Value]; dup {
			p.errorf(v.Line, "%s: name: duplicate name %q (first used at line %d)", label, v.Value, first)
		} else {
			seen[v.Value] = v.Line
		}
	}
	return v.Value
}

// duration parses a duration value such as 1s or 250ms.
func (p *parser) duration(label, key string, v *yaml.Node) (time.Duration, bool) {
	if v.Kind != yaml.ScalarNode || isNull(v) {
		p.errorf(v.Line, "%s: %s: got %s; want a duration such as 1s or 250ms", label, key, describe(v))
		return 0, false
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		if _, ferr := strconv.ParseFloat(v.Value, 64); ferr == nil {
			p.errorf(v.Line, "%s: %s: invalid duration %q: missing unit (e.g. %ss or %sms)", label, key, v.Value, v.Value, v.Value)
		} else {
			p.errorf(v.Line, "%s: %s: invalid duration %q", label, key, v.Value)
		}
		return 0, false
	}
	return d, true
}

// percentage parses a number from 0 to 100.
func (p *parser) percentage(label, key string, v *yaml.Node) (float64, bool) {
	var f float64
	tag := v.ShortTag()
	if v.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || v.Decode(&f) != nil {
		hint := ""
		if s := strings.TrimSuffix(v.Value, "%"); v.Kind == yaml.ScalarNode && s != "" {
			if _, err := strconv.ParseFloat(s, 64); err == nil {
				hint = fmt.Sprintf(" (write %s: %s)", key, s)
			}
		}
		p.errorf(v.Line, "%s: %s: got %s; want a number from 0 to 100%s", label, key, describe(v), hint)
		return 0, false
	}
	if !(f >= 0 && f <= 100) { // also NaN
		p.errorf(v.Line, "%s: %s: must be from 0 to 100, got %s", label, key, v.Value)
		return 0, false
	}
	return f, true
}

// keyValue is one entry of a mapping node.
type keyValue struct{ key, value *yaml.Node }

// pairs returns the entries of mapping m in order, with aliases resolved,
// reporting (prefixed by ctx) and skipping non-string and duplicate keys.
func (p *parser) pairs(m *yaml.Node, ctx string) []keyValue {
	out := make([]keyValue, 0, len(m.Content)/2)
	first := make(map[string]int, len(m.Content)/2) // key -> line
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := resolve(m.Content[i]), resolve(m.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k.Line, "%skeys must be strings, got %s", ctx, describe(k))
			continue
		}
		if line, dup := first[k.Value]; dup {
			p.errorf(k.Line, "%sduplicate key %q (first at line %d)", ctx, k.Value, line)
			continue
		}
		first[k.Value] = k.Line
		out = append(out, keyValue{k, v})
	}
	return out
}

// lookup returns the value of the first key named key in mapping m, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := resolve(m.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			return resolve(m.Content[i+1])
		}
	}
	return nil
}

// resolve follows an alias (*name) to its anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's value for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "an empty value"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported YAML node"
}
