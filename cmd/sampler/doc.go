// Command sampler is Tailsift's one binary.
//
//	sampler run [flags]     run a sampler node
//
// Run "sampler run -h" for the flags.
package main
