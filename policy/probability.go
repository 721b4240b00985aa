package policy

import (
	"encoding/binary"
	"math"
)

// randomnessBits is the number of trace-ID bits used as sampling randomness:
// the W3C trace-context level 2 "random" flag guarantees that at least the
// right-most 7 bytes of the trace ID are random.
const randomnessBits = 56

// MaxThreshold is the rejection threshold of probability 0: no 56-bit
// randomness value reaches it, so nothing is kept.
const MaxThreshold Threshold = 1 << randomnessBits

// Threshold is an OpenTelemetry consistent-sampling rejection threshold T in
// [0, 2^56]: a trace is kept iff its randomness R (see [Randomness]) is >= T.
// The keep probability is (2^56 - T) / 2^56. Threshold 0 keeps every trace,
// [MaxThreshold] none.
//
// Every node computes the same T for the same probability and the same R for
// the same trace ID, so every node takes the same decision for a trace, and a
// trace kept at probability p is also kept at every p' > p.
type Threshold uint64

// ThresholdFor returns the threshold for keep probability p:
// round((1-p) * 2^56), clamped to [0, 2^56]. p <= 0 (and NaN) gives
// [MaxThreshold]; p >= 1 gives 0.
//
// The product is computed exactly for the float64 p (as 2^56 - k with
// k = p*2^56 rounded, ties rounding T up), not through the rounded float
// 1-p, which would be off by up to 8 units for small p. So
// ThresholdFor(d.Probability) is the exact threshold a [Decision] applied.
func ThresholdFor(p float64) Threshold {
	switch {
	case !(p > 0): // also NaN
		return MaxThreshold
	case p >= 1:
		return 0
	}
	x := p * (1 << randomnessBits) // exact: scaling by a power of two
	k := math.Floor(x)
	if x-k > 0.5 { // x-k is exact (Sterbenz); a tie keeps k, rounding T up
		k++
	}
	return MaxThreshold - Threshold(k)
}

// Randomness returns the sampling randomness of a trace ID: its low 56 bits,
// bytes 9..15 read big-endian.
func Randomness(id [16]byte) uint64 {
	return binary.BigEndian.Uint64(id[8:]) & (1<<randomnessBits - 1)
}

// Keep reports whether a trace with this ID is kept at threshold th.
func (th Threshold) Keep(id [16]byte) bool {
	return Randomness(id) >= uint64(th)
}

// Probability returns the keep probability of th, (2^56 - T) / 2^56.
func (th Threshold) Probability() float64 {
	if th >= MaxThreshold {
		return 0
	}
	return float64(MaxThreshold-th) / (1 << randomnessBits)
}

// AppendTraceStateTH appends th in the encoding of the OpenTelemetry
// tracestate "th" key (the value of "ot=th:..."): 14 lowercase hex digits
// with trailing zeros removed, "0" for threshold 0 (keep all). [MaxThreshold]
// (keep none) has no encoding; dst is returned unchanged for it, as no kept
// trace can carry it.
func (th Threshold) AppendTraceStateTH(dst []byte) []byte {
	const hex = "0123456789abcdef"
	if th >= MaxThreshold {
		return dst
	}
	if th == 0 {
		return append(dst, '0')
	}
	v := uint64(th)
	n := randomnessBits / 4 // hex digits
	for v&0xf == 0 {        // th != 0, so this stops
		v >>= 4
		n--
	}
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, hex[(v>>(4*uint(i)))&0xf])
	}
	return dst
}

// KeepByTraceID reports whether the trace with this ID is kept at keep
// probability p. It is ThresholdFor(p).Keep(id); hot paths should compute the
// threshold once.
func KeepByTraceID(id [16]byte, p float64) bool {
	return ThresholdFor(p).Keep(id)
}
