package tracestate_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/tailsift/tailsift/internal/tracestate"
)

// FuzzAppendWithThreshold checks AppendWithThreshold against a plain,
// allocating reference written from the specifications, and the properties
// downstream consumers rely on: a tracestate the OpenTelemetry Go API
// accepts stays acceptable, the threshold reads back as the larger of the
// two, and the edit is idempotent.
func FuzzAppendWithThreshold(f *testing.F) {
	for _, s := range []string{
		"", "ot=" + rv, "a=1,ot=th:8;" + rv + ",b=2", "ot=th:f", "ot=garbage", "ot=th:8;;rv:1",
		" a=1 ,\t,ot=rv:1 ,, b=2\t", "ot=th:4,ot=th:f", "a=1,garbage,=x", "ot=th:ZZ;rv:x",
		strings.Repeat("k=v,", 40),
	} {
		f.Add(s, uint64(thP10))
		f.Add(s, uint64(0))
	}
	f.Add("ot=th:1", uint64(tracestate.MaxThreshold))
	f.Fuzz(func(t *testing.T, old string, th uint64) {
		got := string(tracestate.AppendWithThreshold(nil, []byte(old), th))
		if th >= tracestate.MaxThreshold {
			if got != old {
				t.Fatalf("th %#x has no encoding, but %q became %q", th, old, got)
			}
			return
		}
		if want := reference(old, th); got != want {
			t.Fatalf("AppendWithThreshold(%q, %#x)\n got %q\nwant %q (reference)", old, th, got, want)
		}
		if len(got) > len(old)+tracestate.MaxGrowth {
			t.Fatalf("%q grew to %q: more than MaxGrowth", old, got)
		}
		if utf8.ValidString(old) && !utf8.ValidString(got) {
			t.Fatalf("valid UTF-8 %q became invalid %q", old, got)
		}
		if _, err := trace.ParseTraceState(old); err == nil {
			if _, err := trace.ParseTraceState(got); err != nil {
				t.Fatalf("valid tracestate %q became %q, which the OpenTelemetry API rejects: %v", old, got, err)
			}
		}
		gotTH, ok := tracestate.Threshold([]byte(got))
		if in, inOK := tracestate.Threshold([]byte(old)); !ok || gotTH != max(th, in) || !inOK && gotTH != th {
			t.Fatalf("Threshold(%q) = %#x, %v; want max(%#x, incoming %#x (%v))", got, gotTH, ok, th, in, inOK)
		}
		if again := string(tracestate.AppendWithThreshold(nil, []byte(got), th)); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", old, got, again)
		}
	})
}

var (
	subKeyRE   = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	subValueRE = regexp.MustCompile(`^[A-Za-z0-9._-]*$`)
	thRE       = regexp.MustCompile(`^[0-9a-fA-F]{1,14}$`)
)

// reference is AppendWithThreshold spelled out with the standard library.
func reference(old string, th uint64) string {
	var ot string
	var others []string
	found := false
	for _, m := range strings.Split(old, ",") {
		m = strings.Trim(m, " \t")
		switch {
		case m == "":
		case strings.HasPrefix(m, "ot="):
			if !found {
				ot, found = m[len("ot="):], true
			}
		default:
			others = append(others, m)
		}
	}

	var subs []string
	valid := found && ot != "" && len(ot) <= 256
	var in uint64
	hasTH := false
	seen := map[string]bool{}
	for _, s := range strings.Split(ot, ";") {
		if !valid {
			break
		}
		k, v, ok := strings.Cut(s, ":")
		if !ok || !subKeyRE.MatchString(k) || !subValueRE.MatchString(v) || seen[k] {
			valid = false
			break
		}
		seen[k] = true
		if k != "th" {
			subs = append(subs, s)
			continue
		}
		if thRE.MatchString(v) {
			in, _ = strconv.ParseUint(v+strings.Repeat("0", 14-len(v)), 16, 64)
			hasTH = true
		}
	}
	if !valid {
		subs, hasTH = nil, false
	}
	if hasTH && in > th {
		th = in
	}

	enc := strings.TrimRight(strconv.FormatUint(th|1<<56, 16)[1:], "0")
	if enc == "" {
		enc = "0"
	}
	value := "th:" + enc
	for _, s := range subs {
		if len(value)+1+len(s) <= 256 {
			value += ";" + s
		}
	}
	list := append([]string{"ot=" + value}, others[:min(len(others), 31)]...)
	return strings.Join(list, ",")
}
