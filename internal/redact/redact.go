package redact

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Mask replaces what is redacted.
const Mask = "REDACTED"

// minLiteral is the shortest secret a Redactor replaces wherever it
// appears; a shorter one would mangle ordinary words in the logs, so it is
// redacted only where it sits in a URL.
const minLiteral = 4

// secretParams are substrings of query parameter names whose values are
// redacted. Broad on purpose: redacting a harmless value costs nothing.
var secretParams = []string{"key", "token", "secret", "passw", "pwd", "auth", "sig", "credential", "session", "private"}

var (
	// urlRE finds scheme://... in text; the URL ends at a space or quote.
	urlRE = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://[^\\s\"'`<>]+")
	// bareRE finds user:password@ without a scheme (a mistyped gRPC
	// --forward), after a delimiter so that the user part is whole.
	bareRE = regexp.MustCompile(`(^|[\s"'=,(\[<])[^\s"'=,(\[<>/@:]+:[^\s"'<>/@]*@`)
)

// URL returns s with its userinfo replaced by Mask, and the values of its
// secret-looking query parameters too. s need not parse; without "://"
// the text up to the first '/' is taken as the host part.
func URL(s string) string {
	head, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		head, rest = s[:i+3], s[i+3:]
	}
	var b strings.Builder
	b.WriteString(head)
	authority := rest
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		authority = rest[:end]
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		b.WriteString(Mask)
		rest = rest[at:]
	}
	q := strings.IndexByte(rest, '?')
	if q < 0 {
		b.WriteString(rest)
		return b.String()
	}
	b.WriteString(rest[:q+1])
	query, fragment := rest[q+1:], ""
	if h := strings.IndexByte(query, '#'); h >= 0 {
		query, fragment = query[:h], query[h:]
	}
	for i, p := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		if k, _, ok := strings.Cut(p, "="); ok && secretParam(k) {
			p = k + "=" + Mask
		}
		b.WriteString(p)
	}
	b.WriteString(fragment)
	return b.String()
}

func secretParam(name string) bool {
	if u, err := url.QueryUnescape(name); err == nil {
		name = u
	}
	name = strings.ToLower(name)
	for _, s := range secretParams {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// Text redacts every URL in free text (a log message, an error): those
// with a scheme as URL does, and user:password@ without one.
func Text(s string) string {
	if !strings.ContainsAny(s, "@?") {
		return s // the common case: nothing a URL could hide a secret in
	}
	s = urlRE.ReplaceAllStringFunc(s, URL)
	return bareRE.ReplaceAllString(s, "${1}"+Mask+"@")
}

// Redactor redacts text as Text does, and replaces the secrets of a few
// known values (the configured --forward URL) wherever they appear. The
// zero Redactor, and a nil one, only does what Text does.
type Redactor struct {
	pairs   []string          // old, new pairs of literal
	literal *strings.Replacer // nil: no known secrets
}

// New returns a Redactor for the secrets in values, each a URL or a
// setting that may be one: its password and the values of its secret
// query parameters, as written, unescaped and escaped as by %q. Secrets
// shorter than 4 bytes are redacted only where they sit in a URL.
func New(values ...string) *Redactor {
	var pairs []string
	add := func(s string, unescape func(string) (string, error)) {
		quoted := strconv.Quote(s)
		variants := []string{s, quoted[1 : len(quoted)-1]}
		if u, err := unescape(s); err == nil {
			variants = append(variants, u)
		}
		for _, v := range variants {
			if len(v) >= minLiteral {
				pairs = append(pairs, v, Mask)
			}
		}
	}
	for _, v := range values {
		rest := v
		if i := strings.Index(v, "://"); i >= 0 {
			rest = v[i+3:]
		}
		authority := rest
		if end := strings.IndexAny(rest, "/?#"); end >= 0 {
			authority = rest[:end]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			if _, password, ok := strings.Cut(authority[:at], ":"); ok {
				add(password, url.PathUnescape)
			}
		}
		if _, query, ok := strings.Cut(rest, "?"); ok {
			query, _, _ = strings.Cut(query, "#")
			for _, p := range strings.Split(query, "&") {
				if k, v, ok := strings.Cut(p, "="); ok && secretParam(k) {
					add(v, url.QueryUnescape)
				}
			}
		}
	}
	return newRedactor(pairs)
}

func newRedactor(pairs []string) *Redactor {
	if len(pairs) == 0 {
		return &Redactor{}
	}
	return &Redactor{pairs: pairs, literal: strings.NewReplacer(pairs...)}
}

// With returns a Redactor that also replaces each of secrets (API keys,
// tokens: values that are secret whole) wherever it appears, as written
// and escaped as by %q. Secrets shorter than 4 bytes are not replaced:
// they would mask common text.
func (r *Redactor) With(secrets ...string) *Redactor {
	var pairs []string
	if r != nil {
		pairs = append(pairs, r.pairs...)
	}
	for _, s := range secrets {
		quoted := strconv.Quote(s)
		for _, v := range []string{s, quoted[1 : len(quoted)-1]} {
			if len(v) >= minLiteral {
				pairs = append(pairs, v, Mask)
			}
		}
	}
	return newRedactor(pairs)
}

// Text returns s with the known secrets and every URL's secrets redacted.
func (r *Redactor) Text(s string) string {
	if r != nil && r.literal != nil {
		s = r.literal.Replace(s)
	}
	return Text(s)
}

// Args redacts a command line (os.Args), argument by argument.
func (r *Redactor) Args(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = r.Text(a)
	}
	return out
}

// Handler returns a slog.Handler that redacts each message and attribute
// value, then passes the record to h.
func (r *Redactor) Handler(h slog.Handler) slog.Handler { return &handler{next: h, r: r} }

type handler struct {
	next slog.Handler
	r    *Redactor
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.Text(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.r.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.r.attr(a)
	}
	return &handler{next: h.next.WithAttrs(red), r: h.r}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), r: h.r}
}

// attr redacts an attribute's value. A value that is not a string (an
// error, a list) is formatted to be checked, and logged as the redacted
// string only if redaction changed it.
func (r *Redactor) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := r.Text(v.String()); s != v.String() {
			return slog.String(a.Key, s)
		}
	case slog.KindAny:
		s := fmt.Sprint(v.Any())
		if red := r.Text(s); red != s {
			return slog.String(a.Key, red)
		}
	case slog.KindGroup:
		group := v.Group()
		red := make([]slog.Attr, len(group))
		for i, g := range group {
			red[i] = r.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
