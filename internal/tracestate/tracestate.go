package tracestate

import "bytes"

const (
	// MaxMembers is the most list members a tracestate may hold (W3C).
	MaxMembers = 32
	// MaxOTValue is the longest "ot" member value, in bytes (OpenTelemetry).
	MaxOTValue = 256
	// MaxThreshold is 2^56, the threshold of probability 0. Thresholds are
	// 56-bit; MaxThreshold itself has no encoding, as no kept span carries it.
	MaxThreshold = 1 << 56
	// MaxGrowth is the most AppendWithThreshold appends beyond len(old):
	// "ot=th:", 14 hex digits and a separator, when old has no "ot" member.
	MaxGrowth = len("ot=th:") + thDigits + len(",")
)

// thDigits is the number of hex digits of a 56-bit threshold.
const thDigits = 14

// AppendWithThreshold appends to dst the tracestate old with the
// OpenTelemetry consistent-sampling threshold th set: the "th" sub-key of
// the "ot" member becomes the larger (the more restrictive) of th and the
// valid "th" old carries, if any; the "ot" member moves to the front; "rv",
// any other "ot" sub-key and every other member are kept (see the package
// documentation for the limits that can drop some).
//
// th must be below [MaxThreshold]; for larger values dst is returned with
// old appended unchanged. old must not overlap the spare capacity of dst.
// It does not allocate if dst has room for len(old)+[MaxGrowth] more bytes.
func AppendWithThreshold(dst, old []byte, th uint64) []byte {
	if th >= MaxThreshold {
		return append(dst, old...)
	}
	if len(old) == 0 { // the common case
		return AppendTH(append(dst, "ot=th:"...), th)
	}
	ot, found := findOT(old)
	var in uint64
	hasTH, valid := false, false
	if found {
		in, hasTH, valid = parseOT(ot)
	}
	if hasTH && in > th {
		th = in
	}

	start := len(dst) + len("ot=")
	dst = append(dst, "ot=th:"...)
	dst = AppendTH(dst, th)
	if valid {
		for rest, more := ot, true; more; {
			var sub []byte
			sub, rest, more = cut(rest, ';')
			if subKeyIs(sub, "th") {
				continue
			}
			if len(dst)-start+1+len(sub) > MaxOTValue {
				continue // does not fit any more: dropped
			}
			dst = append(dst, ';')
			dst = append(dst, sub...)
		}
	}

	n := 1
	for rest, more := old, true; more && n < MaxMembers; {
		var m []byte
		m, rest, more = cutMember(rest)
		if len(m) == 0 || isOTMember(m) {
			continue // empty members are allowed and mean nothing; ot is written
		}
		dst = append(dst, ',')
		dst = append(dst, m...)
		n++
	}
	return dst
}

// Threshold returns the threshold in the "th" sub-key of the "ot" member of
// ts, and whether there is a valid one (in a well-formed "ot" member).
func Threshold(ts []byte) (uint64, bool) {
	ot, found := findOT(ts)
	if !found {
		return 0, false
	}
	th, hasTH, valid := parseOT(ot)
	return th, hasTH && valid
}

// AppendTH appends th in the encoding of the "th" sub-key: 14 lowercase hex
// digits with trailing zeros removed, "0" for threshold 0 (keep all). A
// threshold of [MaxThreshold] or more has no encoding: dst is returned
// unchanged. It is the encoding of policy.Threshold.AppendTraceStateTH.
func AppendTH(dst []byte, th uint64) []byte {
	const hex = "0123456789abcdef"
	if th >= MaxThreshold {
		return dst
	}
	if th == 0 {
		return append(dst, '0')
	}
	var buf [thDigits]byte
	for i := thDigits - 1; i >= 0; i-- {
		buf[i] = hex[th&0xf]
		th >>= 4
	}
	n := thDigits
	for buf[n-1] == '0' { // th != 0, so this stops
		n--
	}
	return append(dst, buf[:n]...)
}

// findOT returns the value of the first (left-most: most recent) "ot"
// member of ts.
func findOT(ts []byte) ([]byte, bool) {
	for rest, more := ts, true; more; {
		var m []byte
		m, rest, more = cutMember(rest)
		if isOTMember(m) {
			return m[len("ot="):], true
		}
	}
	return nil, false
}

// parseOT validates an "ot" member value (OpenTelemetry: ";"-separated
// key:value sub-keys with unique keys, at most MaxOTValue bytes) and returns
// its threshold, if it holds a valid one. An invalid "th" value does not make
// the member malformed: it is ignored (and replaced when written).
func parseOT(v []byte) (th uint64, hasTH, valid bool) {
	if len(v) == 0 || len(v) > MaxOTValue {
		return 0, false, false
	}
	pos := 0 // of sub in v
	for rest, more := v, true; more; {
		var sub []byte
		sub, rest, more = cut(rest, ';')
		key, val, ok := cut(sub, ':')
		if !ok || !validSubKey(key) || !validSubValue(val) {
			return 0, false, false
		}
		if pos > 0 && hasSubKey(v[:pos-1], key) {
			return 0, false, false // keys must be unique
		}
		if string(key) == "th" {
			th, hasTH = parseTH(val)
		}
		pos += len(sub) + 1
	}
	return th, hasTH, true
}

// parseTH reads a "th" value: 1 to 14 hex digits, the most significant
// first, trailing zeros omitted.
func parseTH(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > thDigits {
		return 0, false
	}
	var th uint64
	for _, c := range v {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F': // not written so, but unambiguous
			d = c - 'A' + 10
		default:
			return 0, false
		}
		th = th<<4 | uint64(d)
	}
	return th << (4 * uint(thDigits-len(v))), true
}

// hasSubKey reports whether the ";"-separated list l has a sub-key key.
func hasSubKey(l, key []byte) bool {
	for rest, more := l, true; more; {
		var sub []byte
		sub, rest, more = cut(rest, ';')
		if k, _, _ := cut(sub, ':'); bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// subKeyIs reports whether the sub-key "key:value" sub has key key.
func subKeyIs(sub []byte, key string) bool {
	return len(sub) > len(key) && sub[len(key)] == ':' && string(sub[:len(key)]) == key
}

// validSubKey: lcalpha *(lcalpha / DIGIT).
func validSubKey(k []byte) bool {
	if len(k) == 0 || k[0] < 'a' || k[0] > 'z' {
		return false
	}
	for _, c := range k[1:] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validSubValue: *(ucalpha / lcalpha / DIGIT / "." / "_" / "-").
func validSubValue(v []byte) bool {
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isOTMember(m []byte) bool {
	return len(m) >= 3 && m[0] == 'o' && m[1] == 't' && m[2] == '='
}

// cutMember returns the first list member of s with its surrounding OWS
// (spaces and tabs) removed, possibly empty, and what follows its comma;
// more is false if it was the last member.
func cutMember(s []byte) (member, rest []byte, more bool) {
	member, rest, more = cut(s, ',')
	for len(member) > 0 && (member[0] == ' ' || member[0] == '\t') {
		member = member[1:]
	}
	for len(member) > 0 && (member[len(member)-1] == ' ' || member[len(member)-1] == '\t') {
		member = member[:len(member)-1]
	}
	return member, rest, more
}

// cut is bytes.Cut for one separator byte.
func cut(s []byte, sep byte) (before, after []byte, found bool) {
	if i := bytes.IndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, nil, false
}
