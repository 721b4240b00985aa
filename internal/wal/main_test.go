package wal_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The syncer must end with its log.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
