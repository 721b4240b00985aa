// Package redact hides secrets in what the sampler logs and serves: the
// user and password of a URL (https://user:password@host) and the values
// of query parameters whose names look secret (api_key, token, sig, ...).
// A --forward URL carries them, and it shows up in the start-up log line,
// in errors, and in the command line that /debug/pprof/cmdline serves.
//
// URL and Text work on the text, not on a parsed URL, so that a URL that
// does not parse (the likeliest kind to be quoted in an error) is redacted
// too. A Redactor also knows the secrets of the configured values and
// replaces them wherever they appear, however the text around them was
// quoted or escaped.
//
// Everything is safe for concurrent use. Nothing here is on the span path:
// it runs per log line and per admin request.
package redact
