// Command sampler is Tailsift's one binary.
//
//	sampler run [flags]     run a sampler node
//	sampler bench [flags]   run a load benchmark and print a report
//
// Run "sampler run -h" for the flags.
package main
