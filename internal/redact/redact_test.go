package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://alice:s3cret@collector:4318/v1/traces?api_key=abc&tenant=acme#top",
			"https://REDACTED@collector:4318/v1/traces?api_key=REDACTED&tenant=acme#top"},
		{"https://t0ken@collector/v1/traces", "https://REDACTED@collector/v1/traces"},
		{"https://alice:p@ss@collector", "https://REDACTED@collector"}, // the last @ ends the userinfo
		{"https://alice:s3cret@collector:notaport", "https://REDACTED@collector:notaport"},
		{"alice:s3cret@collector:4317", "REDACTED@collector:4317"},
		{"http://collector:4318/v1/traces", "http://collector:4318/v1/traces"},
		{"https://collector/a@b?page=2", "https://collector/a@b?page=2"},
		{"collector:4317", "collector:4317"},
		{"stdout", "stdout"},
		{"file:/var/lib/kept.jsonl", "file:/var/lib/kept.jsonl"},
		{"https://s3/b?X-Amz-Signature=abc&X-Amz-Credential=def&X-Amz-Date=2026",
			"https://s3/b?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Date=2026"},
		{"https://h/?access_token=a&Authorization=b&api%5Fkey=c&password=d&sessionid=e&flag&=f",
			"https://h/?access_token=REDACTED&Authorization=REDACTED&api%5Fkey=REDACTED&password=REDACTED&sessionid=REDACTED&flag&=f"},
	} {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
		if again := URL(URL(c.in)); again != URL(c.in) {
			t.Errorf("URL is not idempotent on %q: %q", c.in, again)
		}
	}
}

func TestText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`export: Endpoint "https://alice:s3cret@h:x": parse "https://alice:s3cret@h:x": invalid port ":x" after host`,
			`export: Endpoint "https://REDACTED@h:x": parse "https://REDACTED@h:x": invalid port ":x" after host`},
		{`export: Endpoint "alice:s3cret@h:4317": want host:port`, `export: Endpoint "REDACTED@h:4317": want host:port`},
		{`forward=alice:s3cret@h:4317 admin=127.0.0.1:8888`, `forward=REDACTED@h:4317 admin=127.0.0.1:8888`},
		{`--forward=https://bob:pw@h/v1/traces?token=t`, `--forward=https://REDACTED@h/v1/traces?token=REDACTED`},
		{`mail ops@example.com about 127.0.0.1:7946`, `mail ops@example.com about 127.0.0.1:7946`},
		{`members=[a b] share=0.5`, `members=[a b] share=0.5`},
		{`what? a=b`, `what? a=b`},
	} {
		if got := Text(c.in); got != c.want {
			t.Errorf("Text(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

// The error net/http returns for a failed POST keeps the user and the
// query of the URL (it hides only the password); export logs such errors.
func TestTextHTTPClientError(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nobody listens: the POST fails at once
	_, err = http.Post("http://alice:s3cretpw@"+addr+"/v1/traces?api_key=t0ps3cret", "application/x-protobuf", nil)
	if err == nil {
		t.Skip("something answered on a freed port")
	}
	if !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "t0ps3cret") {
		t.Logf("net/http no longer shows them: %v", err)
	}
	got := Text(err.Error())
	for _, secret := range []string{"alice", "s3cretpw", "t0ps3cret"} {
		if strings.Contains(got, secret) {
			t.Errorf("Text(%q) = %q, still shows %q", err.Error(), got, secret)
		}
	}
}

// A Redactor replaces the configured secrets wherever they appear, as
// written, unescaped or quoted; short ones only inside URLs.
func TestRedactor(t *testing.T) {
	r := New(`https://alice:p"w%21long@h/v1/traces?token=abcd1234&tenant=acme`, "stdout", "https://bob:pw@h2")
	for _, c := range []struct{ in, want string }{
		{`bad password p\"w%21long given`, `bad password REDACTED given`},
		{`bad password p"w!long given`, `bad password REDACTED given`},
		{`token abcd1234 refused`, `token REDACTED refused`},
		{`tenant acme; the pw is short`, `tenant acme; the pw is short`},
		{`Post "https://bob:***@h2/v1/traces"`, `Post "https://REDACTED@h2/v1/traces"`},
	} {
		if got := r.Text(c.in); got != c.want {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	args := r.Args([]string{"sampler", "run", "--forward", "https://alice:x@h/?api_key=k", "--forward=https://bob:pw@h2", "--admin", "127.0.0.1:8888"})
	want := []string{"sampler", "run", "--forward", "https://REDACTED@h/?api_key=REDACTED", "--forward=https://REDACTED@h2", "--admin", "127.0.0.1:8888"}
	if strings.Join(args, " ") != strings.Join(want, " ") {
		t.Errorf("Args = %q, want %q", args, want)
	}
	var nilR *Redactor
	if got := nilR.Text("https://a:b@h"); got != "https://REDACTED@h" {
		t.Errorf("nil Redactor: %q", got)
	}
}

// Every message and attribute value, however it is passed (With, a group,
// an error, a string), is redacted; other values keep their type.
func TestHandler(t *testing.T) {
	const forward = "https://alice:s3cretpw@collector/v1/traces?api_key=t0ps3cret"
	r := New(forward)
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		var h slog.Handler = slog.NewTextHandler(&buf, nil)
		if format == "json" {
			h = slog.NewJSONHandler(&buf, nil)
		}
		log := slog.New(r.Handler(h)).With("forward", forward).WithGroup("g")
		log.Info("sending to "+forward, "err", errors.New(`Post "http://alice:***@collector/v1/traces?api_key=t0ps3cret": refused`),
			slog.Group("inner", "url", forward), "n", 5, "members", []string{"a", "b"}, "literal", "the key is t0ps3cret")
		out := buf.String()
		for _, secret := range []string{"alice", "s3cretpw", "t0ps3cret"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s: %q shows %q", format, out, secret)
			}
		}
		for _, keep := range []string{"REDACTED@collector", "api_key=REDACTED", "refused", `"n":5`, `"members":["a","b"]`} {
			if format == "text" {
				keep = strings.NewReplacer(`"n":5`, "g.n=5", `"members":["a","b"]`, `g.members="[a b]"`).Replace(keep)
			}
			if !strings.Contains(out, keep) {
				t.Errorf("%s: %q lacks %q", format, out, keep)
			}
		}
	}
}

// TestRedactorWith: secrets known whole (an API key read from a file) are
// replaced wherever they appear, quoted or not, besides the URL secrets
// the Redactor already knew.
func TestRedactorWith(t *testing.T) {
	r := New("https://u:hunter22@collector:4318/v1/traces").With("sk-live-0123456789", "abc")
	for in, want := range map[string]string{
		"sending with x-api-key=sk-live-0123456789":       "sending with x-api-key=" + Mask,
		`header "api-key": "sk-live-0123456789\n"`:        `header "api-key": "` + Mask + `\n"`,
		"dial https://u:hunter22@collector:4318: refused": "dial https://" + Mask + "@collector:4318: refused",
		"abc is too short to be replaced":                 "abc is too short to be replaced",
	} {
		if got := r.Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
	if got := (*Redactor)(nil).With("sk-live-0123456789").Text("k=sk-live-0123456789"); got != "k="+Mask {
		t.Errorf("nil Redactor With: %q", got)
	}
}
