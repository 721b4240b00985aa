package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes. It implements flag.Value and yaml.Unmarshaler.
type Size int64

var units = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// Parse reads a size such as "16MiB" or "1.5GiB".
func Parse(s string) (Size, error) {
	in := strings.TrimSpace(s)
	mult := 1.0
	num := in
	for _, u := range units {
		if strings.HasSuffix(in, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(in, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), e.g. 512MiB", s)
	}
	b := v * mult
	if b > math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(b), nil
}

// String prints the size in the largest binary unit that divides it.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// Set implements flag.Value.
func (s *Size) Set(v string) error {
	p, err := Parse(v)
	if err != nil {
		return err
	}
	*s = p
	return nil
}

// UnmarshalYAML accepts a string with a unit or a plain number of bytes.
func (s *Size) UnmarshalYAML(unmarshal func(any) error) error {
	var v string
	if err := unmarshal(&v); err != nil {
		return err
	}
	return s.Set(v)
}

// MarshalYAML prints the size with its unit.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }
