package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailsift/tailsift/node"
)

// A bad data_key_file is reported as such, not as the gossip key it is
// read like.
func TestDataKeyFileError(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "data.key")
	if err := os.WriteFile(keyFile, []byte("not a key!"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "", ""
	cfg.DataDir, cfg.DataKeyFile = filepath.Join(dir, "data"), keyFile
	n, err := node.New(cfg, node.Options{})
	if err == nil {
		n.Shutdown(t.Context())
		t.Fatal("node started with a key file that is not base64")
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "data_key_file (--data-key-file): ") || !strings.Contains(msg, "not base64") || strings.Contains(msg, "cluster") {
		t.Fatalf("error %q: want it to name data_key_file, say not base64, and not mention the cluster", msg)
	}
}
