package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"

	"github.com/tailsift/tailsift/internal/otlpclient"
)

// peerTokenLabel is what the peer link's token is derived from under the
// gossip key; a new label makes new tokens.
const peerTokenLabel = "tailsift peer link v1"

// PeerToken is the bearer token peers present on the peer link when they
// share a gossip key: an HMAC-SHA256 of a fixed label under the key. It
// shows that the caller knows the key without giving the key away. Over
// plaintext an eavesdropper can replay it: peer TLS (PeerServerTLS) keeps
// it and the spans private.
func PeerToken(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(peerTokenLabel))
	return hex.EncodeToString(m.Sum(nil))
}

// authorized reports whether an authorization header value carries the
// token of key (any value will do without a key).
func authorized(values []string, key []byte) bool {
	if len(key) == 0 {
		return true
	}
	want := "Bearer " + PeerToken(key)
	return len(values) == 1 && subtle.ConstantTimeCompare([]byte(values[0]), []byte(want)) == 1
}

// dialPeer makes the client for a peer's link (host:port): over TLS with
// PeerDialTLS, and with the token when there is a gossip key.
func (cfg Config) dialPeer(addr string) (*otlpclient.Client, error) {
	oc := otlpclient.Config{Endpoint: addr}
	if cfg.PeerDialTLS != nil {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		oc.TLS = cfg.PeerDialTLS(host)
	}
	if len(cfg.SecretKey) > 0 {
		oc.Headers = map[string]string{"authorization": "Bearer " + PeerToken(cfg.SecretKey)}
	}
	return otlpclient.New(oc)
}
