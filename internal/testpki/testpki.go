// Package testpki is package pki for tests: certificate authorities and
// certificates made at test time, failing the test on error. It is
// imported only by tests.
package testpki

import (
	"crypto/tls"
	"os"
	"testing"

	"github.com/tailsift/tailsift/internal/pki"
)

// CA is a certificate authority.
type CA struct{ *pki.CA }

// Leaf is a certificate and its key.
type Leaf struct{ *pki.Leaf }

// Files are where WriteFiles put a leaf and its CA.
type Files = pki.Files

// NewCA makes a self-signed CA named name.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{ca}
}

func (ca *CA) issue(tb testing.TB, name string, u pki.Usage, sans ...string) *Leaf {
	tb.Helper()
	l, err := ca.Issue(name, u, sans...)
	if err != nil {
		tb.Fatal(err)
	}
	return &Leaf{l}
}

// Server issues a server certificate for 127.0.0.1, ::1, localhost and
// name.
func (ca *CA) Server(tb testing.TB, name string) *Leaf {
	tb.Helper()
	return ca.issue(tb, name, pki.Server)
}

// Client issues a client certificate with common name cn and, if given,
// DNS SANs.
func (ca *CA) Client(tb testing.TB, cn string, sans ...string) *Leaf {
	tb.Helper()
	return ca.issue(tb, cn, pki.Client, sans...)
}

// Peer issues a certificate good for both ends of a connection, as a
// cluster node's is.
func (ca *CA) Peer(tb testing.TB, name string) *Leaf {
	tb.Helper()
	return ca.issue(tb, name, pki.Peer)
}

// TLS is the leaf as a tls.Certificate.
func (l *Leaf) TLS(tb testing.TB) tls.Certificate {
	tb.Helper()
	c, err := l.Leaf.TLS()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// WriteFiles writes the leaf, its key and the CA into dir (see
// pki.WriteFiles).
func WriteFiles(tb testing.TB, dir, name string, l *Leaf, ca *CA) Files {
	tb.Helper()
	f, err := pki.WriteFiles(dir, name, l.Leaf, ca.CA)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// WriteFile replaces path with data atomically.
func WriteFile(tb testing.TB, path string, data []byte, perm os.FileMode) {
	tb.Helper()
	if err := pki.WriteFile(path, data, perm); err != nil {
		tb.Fatal(err)
	}
}
