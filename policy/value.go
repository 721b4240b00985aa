package policy

import (
	"cmp"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Comparing attribute values with policy literals.
//
// A literal's YAML type chooses the comparison, never the attribute's:
//
//   - a text literal ("500", GET, quoted or not when not a number) equals
//     only string values, byte for byte; regex matches only string values;
//   - a number literal (500, 0.5) compares numerically with int and double
//     values, exactly (an int64 is never rounded to a float64), and with
//     string values that are a decimal number in full ("500", "-1.5e3");
//   - a bool literal (true, false) equals only bool values.
//
// So `attr.http.response.status_code: 500` matches the int 500, the double
// 500.0 and the string "500", while `...: "500"` matches only the string.
// Values of other kinds (arrays, maps, bytes) only answer exists. A NaN
// double compares with nothing.

// litKind is the type of a literal.
type litKind uint8

const (
	litText litKind = iota
	litInt
	litFloat
	litBool
)

// lit is one literal of a condition, typed when parsed.
type lit struct {
	kind litKind
	s    string
	i    int64
	f    float64 // litFloat; never NaN
	b    bool
}

// fieldType is the type of a field, which decides the literals and
// operators it takes and how its values print.
type fieldType uint8

const (
	typeText     fieldType = iota // span name
	typeInt                       // span_count, error_count, services
	typeDuration                  // duration (value: int nanoseconds)
	typeBool                      // has_root, is_root
	typeKind                      // span kind (value: int, OTLP enum)
	typeStatus                    // span status (value: int, OTLP enum)
	typeAny                       // attributes: typed by the value
	typeEvent                     // event names (a set, not a value)
)

var kindNames = []string{"unspecified", "internal", "server", "client", "producer", "consumer"}
var statusNames = []string{"unset", "ok", "error"}

// testOp is one operator of a matcher.
type testOp uint8

const (
	testIn testOp = iota // eq (one literal) and in (several)
	testRegex
	testGt
	testGte
	testLt
	testLte
	testExists
)

// test is one operator with its operand. A matcher is a list of tests that
// must all hold.
type test struct {
	op     testOp
	lits   []lit               // testIn
	set    map[string]struct{} // testIn with many text literals: their set
	num    lit                 // comparisons: a litInt or litFloat
	re     *regexp.Regexp      // testRegex, anchored
	src    string              // testRegex: the expression as written
	exists bool                // testExists
}

// bigIn is the number of text literals from which an in-list is looked up
// in a map rather than scanned.
const bigIn = 8

// matches reports whether value v (present says whether the field or
// attribute exists at all) passes every test.
func matches(tests []test, v *Value, present bool) bool {
	for i := range tests {
		if !tests[i].match(v, present) {
			return false
		}
	}
	return true
}

func (t *test) match(v *Value, present bool) bool {
	if t.op == testExists {
		return present == t.exists
	}
	if !present {
		return false
	}
	switch t.op {
	case testIn:
		if t.set != nil && v.Kind == ValueString {
			if _, ok := t.set[string(v.Str)]; ok { // no allocation: map index by string(bytes)
				return true
			}
		}
		for i := range t.lits {
			if equal(v, &t.lits[i]) {
				return true
			}
		}
		return false
	case testRegex:
		return v.Kind == ValueString && t.re.Match(v.Str)
	}
	c, ok := compare(v, &t.num)
	if !ok {
		return false
	}
	switch t.op {
	case testGt:
		return c > 0
	case testGte:
		return c >= 0
	case testLt:
		return c < 0
	case testLte:
		return c <= 0
	}
	panic("BUG: policy: unknown test operator")
}

// equal reports whether v equals literal l (see the rules above).
func equal(v *Value, l *lit) bool {
	switch l.kind {
	case litText:
		return v.Kind == ValueString && string(v.Str) == l.s
	case litBool:
		return v.Kind == ValueBool && v.Bool == l.b
	}
	c, ok := compare(v, l)
	return ok && c == 0
}

// compare compares v with a number literal: -1, 0, +1 as v is less than,
// equal to or greater than l; ok is false if v is not a number (or NaN).
func compare(v *Value, l *lit) (c int, ok bool) {
	var vi int64
	var vf float64
	isInt := false
	switch v.Kind {
	case ValueInt:
		vi, isInt = v.Int, true
	case ValueDouble:
		vf = v.Double
	case ValueString:
		if vi, vf, isInt, ok = parseNumber(v.Str); !ok {
			return 0, false
		}
	default:
		return 0, false
	}
	if !isInt && vf != vf { // NaN
		return 0, false
	}
	switch {
	case isInt && l.kind == litInt:
		return cmp.Compare(vi, l.i), true
	case isInt:
		return cmpIntFloat(vi, l.f), true
	case l.kind == litInt:
		return -cmpIntFloat(l.i, vf), true
	default:
		return cmpFloat(vf, l.f), true
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpIntFloat compares i with f (not NaN) exactly, without rounding i to a
// float64.
func cmpIntFloat(i int64, f float64) int {
	switch {
	case f >= 0x1p63:
		return -1
	case f < -0x1p63:
		return 1
	}
	t := math.Trunc(f) // -2^63 <= t < 2^63: exact as an int64
	if c := cmp.Compare(i, int64(t)); c != 0 {
		return c
	}
	return cmpFloat(0, f-t) // i == trunc(f): the fraction decides
}

// parseNumber parses b if it is a decimal number in full: an optional '-',
// digits, an optional fraction and an optional exponent (JSON's grammar, a
// leading '+' and leading zeros allowed). Integers that fit an int64 come
// back as isInt. It does not allocate.
func parseNumber(b []byte) (i int64, f float64, isInt, ok bool) {
	j := 0
	if j < len(b) && (b[j] == '-' || b[j] == '+') {
		j++
	}
	digits := j
	for j < len(b) && '0' <= b[j] && b[j] <= '9' {
		j++
	}
	intDigits := j - digits
	if j == len(b) && intDigits > 0 && intDigits <= 18 { // fits an int64
		var n int64
		for _, c := range b[digits:] {
			n = n*10 + int64(c-'0')
		}
		if b[0] == '-' {
			n = -n
		}
		return n, 0, true, true
	}
	fracDigits := 0
	if j < len(b) && b[j] == '.' {
		j++
		k := j
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
		fracDigits = j - k
	}
	if intDigits+fracDigits == 0 {
		return 0, 0, false, false
	}
	hasExp := j < len(b) && (b[j] == 'e' || b[j] == 'E')
	if hasExp {
		j++
		if j < len(b) && (b[j] == '-' || b[j] == '+') {
			j++
		}
		k := j
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
		if j == k {
			return 0, 0, false, false
		}
	}
	if j != len(b) {
		return 0, 0, false, false
	}
	// The syntax is valid, so ParseFloat fails only out of range (and then
	// returns ±Inf, which compares correctly). string(b) does not escape.
	f, _ = strconv.ParseFloat(string(b), 64)
	if j-digits == intDigits && !hasExp { // a long integer: exact if it fits an int64
		if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
			return n, 0, true, true
		}
	}
	return 0, f, false, true
}

// formatLit renders a literal for messages and explanations.
func formatLit(l *lit, ft fieldType) string {
	switch l.kind {
	case litText:
		return strconv.Quote(l.s)
	case litBool:
		return strconv.FormatBool(l.b)
	case litFloat:
		return strconv.FormatFloat(l.f, 'g', -1, 64)
	}
	switch ft {
	case typeDuration:
		return time.Duration(l.i).String()
	case typeKind:
		return enumName(kindNames, l.i)
	case typeStatus:
		return enumName(statusNames, l.i)
	}
	return strconv.FormatInt(l.i, 10)
}

// formatValue renders a field's value for explanations.
func formatValue(v *Value, present bool, ft fieldType) string {
	if !present {
		return "absent"
	}
	switch v.Kind {
	case ValueString:
		return strconv.Quote(string(v.Str))
	case ValueInt:
		return formatLit(&lit{kind: litInt, i: v.Int}, ft)
	case ValueDouble:
		return strconv.FormatFloat(v.Double, 'g', -1, 64) + " (double)"
	case ValueBool:
		return strconv.FormatBool(v.Bool)
	case ValueNone:
		return "present without a value"
	}
	return "an array, map or bytes value"
}

func enumName(names []string, i int64) string {
	if i >= 0 && i < int64(len(names)) {
		return names[i]
	}
	return strconv.FormatInt(i, 10)
}

// formatTests renders a matcher as written in the explanation of a
// condition: `= "GET"`, `in ["a", "b"]`, `>= 500 and < 600`.
func formatTests(tests []test, ft fieldType) string {
	var b strings.Builder
	for i := range tests {
		if i > 0 {
			b.WriteString(" and ")
		}
		t := &tests[i]
		switch t.op {
		case testIn:
			if len(t.lits) == 1 {
				b.WriteString("= ")
				b.WriteString(formatLit(&t.lits[0], ft))
				continue
			}
			b.WriteString("in [")
			for j := range t.lits {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString(formatLit(&t.lits[j], ft))
			}
			b.WriteByte(']')
		case testRegex:
			b.WriteString("=~ ")
			b.WriteString(strconv.Quote(t.src))
		case testExists:
			if t.exists {
				b.WriteString("exists")
			} else {
				b.WriteString("is absent")
			}
		default:
			b.WriteString([...]string{testGt: "> ", testGte: ">= ", testLt: "< ", testLte: "<= "}[t.op])
			b.WriteString(formatLit(&t.num, ft))
		}
	}
	return b.String()
}
