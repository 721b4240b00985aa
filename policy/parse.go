package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads and parses the policy file at path. See [Parse].
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a policy file; name (usually the file's path)
// is the File of every error.
//
// A file it rejects gives [Errors]: every problem found, ordered by line
// and column, each naming the rule and the key at fault and, mostly, a hint
// that fixes it. YAML syntax errors are reported the same way (with a line
// but no column, and only the first one, as the YAML parser stops there).
// Unknown keys, wrong types, unknown fields and operators, bad regular
// expressions, rules that can never be reached and a file without rules are
// errors.
func Parse(name string, data []byte) (*Set, error) {
	p := &parser{file: name}
	root := p.document(data)
	var s *Set
	if root != nil {
		s = p.set(root)
	}
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool {
			a, b := p.errs[i], p.errs[j]
			return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
		})
		return nil, p.errs
	}
	sum := sha256.Sum256(data)
	s.hash = hex.EncodeToString(sum[:])
	return s, nil
}

// Limits that keep a hostile file (deep nesting, alias bombs) from costing
// more than it is worth; no sensible policy comes near them.
const (
	maxDepth     = 32     // nesting of conditions
	maxCondNodes = 10_000 // condition nodes in a file, aliases expanded
)

// parser collects every problem of one file instead of stopping at the first.
type parser struct {
	file  string
	errs  Errors
	nodes int // condition nodes compiled so far
}

// errorf records a problem at node n (nil: no place) and returns it, so the
// caller can add a hint: p.errorf(v, "...").Hint = "...".
func (p *parser) errorf(n *yaml.Node, format string, args ...any) *Error {
	e := Error{File: p.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
	return &p.errs[len(p.errs)-1]
}

const exampleHint = "see policies.example.yaml and docs/policies.md"

// document returns the root node of the file's single YAML document, or nil
// after recording why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, `empty policy file`).Hint = `want "rules:" and optionally "default:"; ` + exampleHint
		} else {
			p.syntaxError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.errorf(&extra, `a second YAML document`).Hint = `a policy file holds exactly one: remove the "---"`
	case !errors.Is(err, io.EOF):
		p.syntaxError(err)
	}
	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		p.errorf(nil, `empty policy file`).Hint = `want "rules:" and optionally "default:"; ` + exampleHint
		return nil
	}
	return resolve(doc.Content[0])
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError records an error of the YAML parser, which knows the line
// but not the column.
func (p *parser) syntaxError(err error) {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	p.errs = append(p.errs, Error{File: p.file, Line: line, Msg: "YAML syntax error: " + msg,
		Hint: "the file is not valid YAML; indent with spaces, and quote values containing \": \" or starting with special characters"})
}

// set compiles the top-level mapping.
func (p *parser) set(root *yaml.Node) *Set {
	if root.Kind != yaml.MappingNode {
		p.errorf(root, `top level: must be a mapping, got %s`, describe(root)).Hint = `want "rules:" and optionally "default:"`
		return nil
	}
	s := &Set{}
	var rules *keyValue
	for _, kv := range p.pairs(root, "") {
		switch k := kv.key.Value; k {
		case "rules":
			rules = &kv
		case "default":
			s.keepByDefault = p.defaultAction(kv.value)
		default:
			p.unknownKey(kv.key, "", k, []string{"rules", "default"})
		}
	}
	if rules == nil {
		p.errorf(root, `rules: missing`).Hint = `list the rules under "rules:"; ` + exampleHint
	} else {
		s.rules = p.rules(rules.key, rules.value)
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
	p.errorf(v, "default: got %s", describe(v)).Hint = "valid values: keep, drop"
	return false
}

func (p *parser) rules(key, n *yaml.Node) []rule {
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 || isNull(n) {
		p.errorf(key, "rules: no rules").Hint = `every trace would get the default; to keep or drop everything on purpose, write a rule "- {name: keep-all, type: always}" or "- {name: drop-all, type: drop}"`
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "rules: must be a list of rules, got %s", describe(n)).Hint = `write each rule as a list item: "- name: ..."`
		return nil
	}
	seen := make(map[string]int) // rule name -> line
	out := make([]rule, 0, len(n.Content))
	var catchAll *rule // the first rule that decides every trace
	for i, item := range n.Content {
		item = resolve(item)
		r, ok := p.rule(i, item, seen)
		if catchAll != nil {
			p.errorf(item, "%s: unreachable: %s (line %d) decides every trace", ruleLabel(i, item), catchAll.label, catchAll.line).Hint =
				"give that rule a when: condition, or move this rule above it"
		} else if r.decidesAll {
			catchAll = &r
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// duration parses a duration value such as 1s or 250ms.
func (p *parser) duration(ctx string, v *yaml.Node) (time.Duration, bool) {
	if v.Kind != yaml.ScalarNode || isNull(v) {
		p.errorf(v, "%s: got %s", ctx, describe(v)).Hint = "want a duration such as 1s or 250ms"
		return 0, false
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		e := p.errorf(v, "%s: invalid duration %q", ctx, v.Value)
		if _, ferr := strconv.ParseFloat(v.Value, 64); ferr == nil {
			e.Hint = fmt.Sprintf("missing unit: write %ss or %sms", v.Value, v.Value)
		} else {
			e.Hint = "want a number with a unit (ns, us, ms, s, m, h), such as 1s, 250ms or 1m30s"
		}
		return 0, false
	}
	return d, true
}

// percentage parses a number from 0 to 100.
func (p *parser) percentage(ctx string, v *yaml.Node) (float64, bool) {
	f, ok := p.number(ctx, v, "a number from 0 to 100")
	if !ok {
		return 0, false
	}
	if !(f >= 0 && f <= 100) { // also NaN
		p.errorf(v, "%s: must be from 0 to 100, got %s", ctx, v.Value).Hint = "a percentage of traces to keep, e.g. 10 or 0.5"
		return 0, false
	}
	return f, true
}

// number parses a YAML number (int or float); want describes it in the
// message.
func (p *parser) number(ctx string, v *yaml.Node, want string) (float64, bool) {
	var f float64
	tag := v.ShortTag()
	if v.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || v.Decode(&f) != nil {
		e := p.errorf(v, "%s: got %s", ctx, describe(v))
		e.Hint = "want " + want
		if s := strings.TrimSuffix(v.Value, "%"); v.Kind == yaml.ScalarNode && s != v.Value {
			if _, err := strconv.ParseFloat(s, 64); err == nil {
				e.Hint = fmt.Sprintf("write the number without %%: %s", s)
			}
		}
		return 0, false
	}
	return f, true
}

// positive parses a number > 0 (and finite).
func (p *parser) positive(ctx string, v *yaml.Node, want string) (float64, bool) {
	f, ok := p.number(ctx, v, want)
	if ok && !(f > 0 && f <= math.MaxFloat64) {
		p.errorf(v, "%s: must be > 0, got %s", ctx, v.Value).Hint = "want " + want
		return 0, false
	}
	return f, ok
}

// integer parses a YAML integer in [lo, hi].
func (p *parser) integer(ctx string, v *yaml.Node, lo, hi int64) (int64, bool) {
	var i int64
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&i) != nil {
		e := p.errorf(v, "%s: got %s", ctx, describe(v))
		e.Hint = fmt.Sprintf("want an integer from %d to %d", lo, hi)
		if hi >= 1<<62 {
			e.Hint = fmt.Sprintf("want an integer >= %d", lo)
		}
		return 0, false
	}
	if i < lo || i > hi {
		p.errorf(v, "%s: must be from %d to %d, got %d", ctx, lo, hi, i).Hint = "want an integer in that range"
		if hi >= 1<<62 {
			p.errs[len(p.errs)-1].Msg = fmt.Sprintf("%s: must be at least %d, got %d", ctx, lo, i)
		}
		return 0, false
	}
	return i, true
}

// boolean parses true or false.
func (p *parser) boolean(ctx string, v *yaml.Node) (bool, bool) {
	var b bool
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" || v.Decode(&b) != nil {
		p.errorf(v, "%s: got %s", ctx, describe(v)).Hint = "want true or false"
		return false, false
	}
	return b, true
}

// unknownKey reports key k of a mapping that takes valid, suggesting the
// closest valid key.
func (p *parser) unknownKey(n *yaml.Node, ctx, k string, valid []string) {
	e := p.errorf(n, "%sunknown key %q", ctx, k)
	e.Hint = "valid keys: " + strings.Join(valid, ", ")
	if s := closest(k, valid); s != "" {
		e.Hint = fmt.Sprintf("did you mean %q? %s", s, e.Hint)
	}
}

// keyValue is one entry of a mapping node.
type keyValue struct{ key, value *yaml.Node }

// pairs returns the entries of mapping m in order, with aliases resolved,
// reporting (prefixed by ctx) and skipping non-string and duplicate keys.
func (p *parser) pairs(m *yaml.Node, ctx string) []keyValue {
	out := make([]keyValue, 0, len(m.Content)/2)
	first := make(map[string]*yaml.Node, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := resolve(m.Content[i]), resolve(m.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			p.errorf(k, "%skeys must be plain strings, got %s", ctx, describe(k)).Hint = "merge keys (<<) and complex keys are not supported"
			continue
		}
		if f, dup := first[k.Value]; dup {
			p.errorf(k, "%sduplicate key %q (first at line %d)", ctx, k.Value, f.Line).Hint = "remove one of them"
			continue
		}
		first[k.Value] = k
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
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
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

// closest returns the candidate nearest to s by edit distance, if it is
// near enough to be a likely typo, or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	if len(s) <= 4 {
		bestD = 2
	}
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
