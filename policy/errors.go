package policy

import (
	"strconv"
	"strings"
)

// Error is one problem found in a policy file.
type Error struct {
	File string // the name given to Parse, the path given to Load
	Line int    // 1-based; 0 when the problem has no line (empty file)
	// Msg names the rule and the key that fixes the problem, e.g.
	// `rules[1] "slow": threshold: invalid duration "1x"`.
	Msg string
}

// Error formats e as "file:line: msg".
func (e Error) Error() string {
	if e.Line <= 0 {
		return e.File + ": " + e.Msg
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// Errors is every problem found in a policy file, ordered by line. [Parse]
// and [Load] return it (as an error) when a file is well-formed YAML but not
// a valid policy set; use errors.As to get at the list.
type Errors []Error

// Error formats the problems one per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}
