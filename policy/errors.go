package policy

import (
	"strconv"
	"strings"
)

// Error is one problem found in a policy file.
type Error struct {
	File string // the name given to Parse, the path given to Load
	// Line and Column locate the problem (1-based): the offending key or
	// value, or the rule a required key is missing from. Line is 0 when the
	// problem has no place (an empty file); Column is 0 when only the line is
	// known (YAML syntax errors).
	Line, Column int
	// Msg says what is wrong and where in the policy, e.g.
	// `rules[1] "slow": threshold: invalid duration "1x"`.
	Msg string
	// Hint says how to fix it, e.g. `write a duration with a unit, such as
	// 1s or 250ms`; it may be empty.
	Hint string
}

// Error formats e as "file:line:column: msg (hint)", leaving out what is
// unknown (no column, no line, no hint).
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteByte(')')
	}
	return b.String()
}

// Errors is every problem found in a policy file, ordered by line and
// column. [Parse] and [Load] return it (as an error) for any file they
// reject, YAML syntax errors included; use errors.As to get at the list.
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
