package spillfile_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its stores; Close must stop the compactor.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
