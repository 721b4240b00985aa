package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	tailsift "github.com/tailsift/tailsift"
	"github.com/tailsift/tailsift/internal/replay"
	"github.com/tailsift/tailsift/policy"
)

const policyUsage = `usage: sampler policy <command> [flags]

commands:
  validate FILE...   check policy files; prints every problem with file:line:column
  test               replay captured traces through a policy file (see "sampler policy test -h")
`

// runPolicy implements "sampler policy".
func runPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	switch args[0] {
	case "validate":
		return runPolicyValidate(args[1:], stdout, stderr)
	case "test":
		return runPolicyTest(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return 0
	}
	fmt.Fprintf(stderr, "sampler policy: unknown command %q\n\n%s", args[0], policyUsage)
	return 2
}

// runPolicyValidate checks each file; it exits 1 if any is invalid.
func runPolicyValidate(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprint(stderr, "usage: sampler policy validate FILE...\n")
		return 2
	}
	code := 0
	for _, f := range files {
		set, err := policy.Load(f)
		if err != nil {
			fmt.Fprintln(stderr, err)
			code = 1
			continue
		}
		names := set.RuleNames()
		fmt.Fprintf(stdout, "%s: valid, %d rules: %s\n", f, len(names)-1, strings.Join(names[:len(names)-1], ", "))
	}
	return code
}

// runPolicyTest implements "sampler policy test": replay captured traces
// through a policy file and print what each rule would match and keep.
func runPolicyTest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sampler policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: sampler policy test --policies FILE --traces CAPTURE[,CAPTURE...] [--explain TRACE_ID] [--json]

Replays captured traces (OTLP JSON lines as written by "sampler run --forward
stdout" or "--forward file:PATH", or OTLP protobuf) through a policy file and
prints, per rule, the traces it decided, kept and dropped and the spans kept.

`)
		fs.PrintDefaults()
	}
	policies := fs.String("policies", "", "policy `file` to test (required; \"embedded\" for the built-in example)")
	traces := fs.String("traces", "", "comma-separated capture `files`")
	explain := fs.String("explain", "", "print how this trace ID (32 hex digits) was decided")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *policies == "" || *traces == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	var set *policy.Set
	var err error
	if *policies == "embedded" {
		set, err = policy.Parse("policies.example.yaml (embedded)", tailsift.ExamplePolicies)
	} else {
		set, err = policy.Load(*policies)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var want [16]byte
	if *explain != "" {
		b, err := hex.DecodeString(*explain)
		if err != nil || len(b) != 16 {
			fmt.Fprintf(stderr, "sampler policy test: --explain wants a trace ID of 32 hex digits, got %q\n", *explain)
			return 2
		}
		want = [16]byte(b)
	}
	found := false
	opts := replay.Options{}
	if *explain != "" {
		opts.OnTrace = func(set *policy.Set, t *replay.Trace) {
			if t.Policy.ID != want {
				return
			}
			found = true
			writeExplanation(stdout, set, t)
		}
	}
	rep, err := replay.Run(set, strings.Split(*traces, ","), opts)
	if err != nil {
		fmt.Fprintf(stderr, "sampler policy test: %v\n", err)
		return 1
	}
	if *explain != "" && !found {
		fmt.Fprintf(stderr, "sampler policy test: trace %s is not in the capture\n", *explain)
		return 1
	}
	if *asJSON {
		return writeJSON(stdout, stderr, rep)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rule\ttraces matched\tkept\tdropped\tspans kept\t")
	for _, r := range rep.Rules {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", r.Rule, r.Matched, r.Kept, r.Dropped, r.KeptSpans)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t\n", rep.Traces, rep.Kept, rep.Traces-rep.Kept, rep.KeptSpans)
	tw.Flush()
	spanShare := 0.0
	if rep.Spans > 0 {
		spanShare = 100 * float64(rep.KeptSpans) / float64(rep.Spans)
	}
	fmt.Fprintf(stdout, "\nkeep share: %.2f%% of traces, %.2f%% of spans (%d traces, %d spans replayed)\n",
		100*rep.KeepShare(), spanShare, rep.Traces, rep.Spans)
	return 0
}

// writeExplanation prints how one trace was decided: each rule tried, and
// why it matched or not.
func writeExplanation(w io.Writer, set *policy.Set, t *replay.Trace) {
	p := &t.Policy
	fmt.Fprintf(w, "trace %x: %d spans, %d with errors, duration %v, root %v\n", p.ID, p.SpanCount, p.ErrorCount, p.Duration(), p.HasRoot)
	fmt.Fprintln(w, set.Explain(p, t.Now).String())
}
