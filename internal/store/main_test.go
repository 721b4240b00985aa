package store_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its stores; Close must stop the store's loops and all
// of Badger's goroutines (compactors, flusher, caches, watermarks).
//
// Two are exempt: when badger.Open fails after starting its caches (as it
// does for the wrong encryption key, which TestEncryption tries), its
// cleanup stops neither the cache monitor nor the allocator pool
// (Badger v4.9.6, DB.cleanup). A store left open still shows its other
// goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"),
	)
}
