package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: sampler <command> [flags]

commands:
  run     run a sampler node: OTLP in, kept traces out (see "sampler run -h")
  bench   run a load benchmark and print a report (see "sampler bench -h")
  policy  validate policy files, or replay captured traces through one (see "sampler policy")
  top     watch nodes live: spans/s, keep share, decisions per rule, buffer, overload (see "sampler top -h")
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runNode(args[1:], stdout, stderr)
	case "bench":
		return runBench(args[1:], stdout, stderr)
	case "policy":
		return runPolicy(args[1:], stdout, stderr)
	case "top":
		return runTop(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sampler: unknown command %q\n\n%s", args[0], usage)
	return 2
}
