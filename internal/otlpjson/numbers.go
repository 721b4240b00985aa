package otlpjson

import (
	"math"
	"strconv"
)

// numberText reads a JSON number, or a string that the caller must check
// with checkNumber: the proto3 JSON mapping accepts both for every numeric
// type, and 64-bit integers are usually strings, since JavaScript numbers
// cannot hold them.
func (d *decoder) numberText() (text []byte, quoted bool, err error) {
	if d.peek() != '"' {
		text, err = d.number()
		return text, false, err
	}
	text, err = d.str()
	return text, true, err
}

// checkNumber checks that the contents of a string are a JSON number
// (without surrounding space, as protojson requires).
func (d *decoder) checkNumber(s []byte, off int) error {
	if len(s) == 0 || numberLen(s) != len(s) {
		return d.errorf(off, "want number, got string %q", truncate(s))
	}
	return nil
}

// numeric reads an integer of the given size into an int64 (the bit
// pattern, for unsigned 64-bit values).
func (d *decoder) numeric(off, bits int, signed bool) (int64, error) {
	text, quoted, err := d.numberText()
	if err != nil {
		return 0, err
	}
	if quoted {
		if err := d.checkNumber(text, off); err != nil {
			return 0, err
		}
	}
	return d.integer(text, off, bits, signed)
}

// integer converts the text of a JSON number to an integer of the given
// size, if the number is one exactly: "12", "1.2e1" and "120e-1" are all 12
// (the proto3 JSON mapping accepts exponent forms); "1.5" is not an integer.
// It never goes through float64, so 19-digit nanosecond times stay exact.
func (d *decoder) integer(num []byte, off, bits int, signed bool) (int64, error) {
	i, neg := 0, num[0] == '-'
	if neg {
		i++
	}
	intStart := i
	i = digitsEnd(num, i)
	intDigits := num[intStart:i]
	var fracDigits []byte
	if i < len(num) && num[i] == '.' {
		j := digitsEnd(num, i+1)
		fracDigits = num[i+1 : j]
		i = j
	}
	exp := 0 // saturates: past maxExp the number is out of any range anyway
	const maxExp = 1 << 40
	if i < len(num) { // 'e' or 'E'
		i++
		expNeg := num[i] == '-'
		if num[i] == '+' || num[i] == '-' {
			i++
		}
		for _, c := range num[i:] {
			exp = min(exp*10+int(c-'0'), maxExp)
		}
		if expNeg {
			exp = -exp
		}
	}
	// The value is digits * 10^scale, digits being the integer and fraction
	// digits run together.
	nd := len(intDigits) + len(fracDigits)
	digit := func(k int) byte {
		if k < len(intDigits) {
			return intDigits[k] - '0'
		}
		return fracDigits[k-len(intDigits)] - '0'
	}
	scale := exp - len(fracDigits)
	keep := nd // digits before the decimal point after scaling
	if scale < 0 {
		keep = max(nd+scale, 0)
		for k := keep; k < nd; k++ {
			if digit(k) != 0 {
				return 0, d.errorf(off, "%s is not an integer", truncate(num))
			}
		}
		scale = 0
	}
	var u uint64
	overflow := false
	for k := range keep {
		c := uint64(digit(k))
		if u > (math.MaxUint64-c)/10 {
			overflow = true
			break
		}
		u = u*10 + c
	}
	for ; u != 0 && scale > 0 && !overflow; scale-- {
		overflow = u > math.MaxUint64/10
		u *= 10
	}
	switch {
	case overflow:
	case signed && neg && u <= 1<<(bits-1):
		return int64(-u), nil // two's complement: also right for -1<<63
	case signed && !neg && u <= 1<<(bits-1)-1:
		return int64(u), nil
	case !signed && (!neg || u == 0) && (bits == 64 || u <= 1<<bits-1):
		return int64(u), nil
	}
	typ := "uint"
	if signed {
		typ = "int"
	}
	return 0, d.errorf(off, "%s out of range for %s%d", truncate(num), typ, bits)
}

// float reads a double (or float) from a number, a quoted number, or one of
// the strings the proto3 JSON mapping uses for non-finite values.
func (d *decoder) float(off, bits int) (float64, error) {
	text, quoted, err := d.numberText()
	if err != nil {
		return 0, err
	}
	if quoted {
		switch string(text) {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
		if err := d.checkNumber(text, off); err != nil {
			return 0, err
		}
	}
	x, err := strconv.ParseFloat(string(text), bits)
	if err != nil { // only overflow: text is valid; underflow rounds to 0 without error
		return 0, d.errorf(off, "%s out of range for float%d", truncate(text), bits)
	}
	return x, nil
}
