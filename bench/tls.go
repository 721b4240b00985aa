package bench

import (
	"crypto/tls"
	"fmt"
	"os"

	"github.com/tailsift/tailsift/internal/pki"
	"github.com/tailsift/tailsift/node"
)

// runTLS is a run's TLS: certificates made for it, in a directory removed
// after it.
type runTLS struct {
	dir    string
	server pki.Files // the OTLP listeners'
	peer   pki.Files // the peer link's (mutual TLS)
	client *tls.Config
}

// peerServerName is the name on every node's peer certificate.
const peerServerName = "tailsift-peer"

func newRunTLS() (*runTLS, error) {
	dir, err := os.MkdirTemp("", "tailsift-bench-tls-")
	if err != nil {
		return nil, err
	}
	r := &runTLS{dir: dir}
	if err := r.make(); err != nil {
		r.remove()
		return nil, fmt.Errorf("--tls: %w", err)
	}
	return r, nil
}

func (r *runTLS) make() error {
	ca, err := pki.NewCA("tailsift bench")
	if err != nil {
		return err
	}
	srv, err := ca.Issue("tailsift", pki.Server)
	if err != nil {
		return err
	}
	peer, err := ca.Issue(peerServerName, pki.Peer)
	if err != nil {
		return err
	}
	if r.server, err = pki.WriteFiles(r.dir, "server", srv, ca); err != nil {
		return err
	}
	if r.peer, err = pki.WriteFiles(r.dir, "peer", peer, ca); err != nil {
		return err
	}
	r.client = &tls.Config{RootCAs: ca.Pool()}
	return nil
}

// configure makes cfg serve OTLP over TLS and, in a cluster, the peer link
// over mutual TLS.
func (r *runTLS) configure(cfg *node.Config, cluster bool) {
	cfg.TLSCertFile, cfg.TLSKeyFile = r.server.Cert, r.server.Key
	if cluster {
		cfg.PeerTLSCertFile, cfg.PeerTLSKeyFile, cfg.PeerTLSCAFile = r.peer.Cert, r.peer.Key, r.peer.CA
		cfg.PeerTLSServerName = peerServerName
	}
}

func (r *runTLS) remove() { os.RemoveAll(r.dir) }
