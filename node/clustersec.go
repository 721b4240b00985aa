package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/tailsift/tailsift/internal/tlsconfig"
)

// clusterExposed reports whether gossip or the peer link listens on an
// address other than loopback, and which.
func (c Config) clusterExposed() (string, bool) {
	if c.ClusterBind == "" {
		return "", false
	}
	cc := c.clusterConfig(nil).EnsureDefaults()
	for _, addr := range []string{cc.Bind, cc.PeerListen} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return addr, true
		}
	}
	return "", false
}

func (c Config) peerTLSSet() bool {
	return c.PeerTLSCertFile != "" || c.PeerTLSKeyFile != "" || c.PeerTLSCAFile != "" || c.PeerTLSServerName != ""
}

// validateClusterSecurity: gossip and the peer link off loopback need the
// gossip key (which also makes the peer link's token) unless
// insecure_cluster says otherwise; peer TLS is mutual, so all its files.
func (c Config) validateClusterSecurity() error {
	var errs []error
	if addr, exposed := c.clusterExposed(); exposed && c.ClusterKeyFile == "" && !c.InsecureCluster {
		errs = append(errs, fmt.Errorf("cluster_bind (--cluster-bind) or peer_listen (--peer-listen) %s is not loopback, and "+
			"cluster_key_file (--cluster-key-file) is not set: anyone who reaches it could join and be handed traces. "+
			"Set a key (it also authenticates the peer link), or insecure_cluster (--insecure-cluster) to run without", addr))
	}
	if c.peerTLSSet() {
		if c.ClusterBind == "" {
			errs = append(errs, errors.New("peer_tls_cert_file (--peer-tls-cert-file) and the other peer TLS settings need cluster_bind (--cluster-bind)"))
		}
		if c.PeerTLSCertFile == "" || c.PeerTLSKeyFile == "" || c.PeerTLSCAFile == "" {
			errs = append(errs, errors.New("peer TLS is mutual: set peer_tls_cert_file (--peer-tls-cert-file), peer_tls_key_file (--peer-tls-key-file) and peer_tls_ca_file (--peer-tls-ca-file) together"))
		}
	}
	return errors.Join(errs...)
}

// peerTLS loads the peer TLS files: the peer link's server config (client
// certificates of peer_tls_ca_file required) and the dialer's.
func (c Config) peerTLS() (*tls.Config, func(host string) *tls.Config, error) {
	if !c.peerTLSSet() {
		return nil, nil, nil
	}
	srv, _, err := tlsconfig.ServerConfig(tlsconfig.Server{CertFile: c.PeerTLSCertFile, KeyFile: c.PeerTLSKeyFile, ClientCAFile: c.PeerTLSCAFile})
	if err != nil {
		return nil, nil, fmt.Errorf("peer TLS files (peer_tls_cert_file, peer_tls_key_file, peer_tls_ca_file): %w", err)
	}
	dial, err := tlsconfig.LoadClient(tlsconfig.Client{CAFile: c.PeerTLSCAFile, CertFile: c.PeerTLSCertFile, KeyFile: c.PeerTLSKeyFile,
		ServerName: c.PeerTLSServerName})
	if err != nil {
		return nil, nil, fmt.Errorf("peer TLS files (peer_tls_cert_file, peer_tls_key_file, peer_tls_ca_file): %w", err)
	}
	return srv, dial.For, nil
}
