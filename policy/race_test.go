//go:build race

package policy_test

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// code using pools (regexp's matchers) allocates under it.
const raceEnabled = true
