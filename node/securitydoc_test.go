package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailsift/tailsift/node"
)

// TestSecurityDocExample: the production configuration in
// docs/security.md has only keys that exist and validates.
func TestSecurityDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Production configuration")
	if !ok {
		t.Fatal("docs/security.md has no production configuration")
	}
	_, block, ok := strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the production configuration is not a yaml code block")
	}
	p := filepath.Join(t.TempDir(), "sampler.yaml")
	if err := os.WriteFile(p, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	if err := cfg.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("docs/security.md's production configuration does not validate:\n%v", err)
	}
	if cfg.TLSClientCAFile == "" || cfg.AdminTokenFile == "" || cfg.ClusterKeyFile == "" || len(cfg.ForwardHeaders) == 0 {
		t.Errorf("the production configuration leaves out a protection: %+v", cfg)
	}
}
