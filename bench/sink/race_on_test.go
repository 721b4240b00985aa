//go:build race

package sink

// raceEnabled: the race detector changes allocation counts (sync.Pool drops
// items at random), so allocation guards are skipped under -race.
const raceEnabled = true
