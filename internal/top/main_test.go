package top

import (
	"testing"

	"go.uber.org/goleak"
)

// Scrapes run concurrently, one goroutine per node: each must end with
// its frame, also for a node that does not answer.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
