// Command sampler is Tailsift's one binary.
//
//	sampler run [flags]     run a sampler node
//	sampler bench [flags]   run a load benchmark and print a report
//	sampler policy validate FILE...   check policy files
//	sampler policy test [flags]       replay captured traces through a policy file
//
// Run "sampler run -h" for the flags.
package main
