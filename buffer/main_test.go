package buffer

import (
	"testing"

	"go.uber.org/goleak"
)

// The spill loop must end with its buffer: Close waits for it, and no test
// may leave one behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
