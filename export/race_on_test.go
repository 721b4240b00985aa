//go:build race

package export

// raceEnabled: the race detector changes allocation counts (sync.Pool drops
// items at random), so allocation guards are skipped.
const raceEnabled = true
