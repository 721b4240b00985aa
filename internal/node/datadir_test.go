package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/node"
)

// secretMarker is in every span the encryption test sends: its name and
// an attribute value.
const secretMarker = "card-number-4111-1111-tailsift"

// With --data-key-file, nothing the sampler writes to its data directory
// shows span bytes in plain text: spans are in the write-ahead log and,
// past the memory limit, spilled. The control, without a key, finds them:
// so the scan can fail.
func TestDataDirEncrypted(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	for _, encrypted := range []bool{true, false} {
		t.Run(map[bool]string{true: "with-key", false: "control-without-key"}[encrypted], func(t *testing.T) {
			dir := t.TempDir()
			cfg := node.DefaultConfig()
			cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "", ""
			cfg.Forward = startSink(t).addr
			cfg.DataDir, cfg.Durability, cfg.MemoryLimit = filepath.Join(dir, "data"), node.DurabilityWAL, 4<<20
			cfg.DecisionWait, cfg.RootWait = time.Minute, time.Minute
			if encrypted {
				key := make([]byte, 32)
				rand.Read(key)
				cfg.DataKeyFile = filepath.Join(dir, "data.key")
				if err := os.WriteFile(cfg.DataKeyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			n, err := node.New(cfg, node.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Shutdown(context.Background())

			ctx := context.Background()
			exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(n.GRPCAddr().String()), otlptracegrpc.WithInsecure())
			if err != nil {
				t.Fatal(err)
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(64), sdktrace.WithBlocking()))
			tr := tp.Tracer("encryption-test")
			padding := strings.Repeat("x", 2000)
			for range 3000 { // ~6 MB of spans: past the 4 MiB limit, so they spill too
				_, span := tr.Start(ctx, "charge "+secretMarker)
				span.SetAttributes(attribute.String("payment.card", secretMarker), attribute.String("padding", padding))
				span.End()
			}
			if err := tp.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool {
				return metricstest.Value(t, n.Registry(), "tailsift_buffer_spilled_bytes", nil) > 0
			}, "spans to spill to the data directory")
			if wal := metricstest.Value(t, n.Registry(), "tailsift_buffer_wal_bytes_total", nil); wal < 6e6 {
				t.Fatalf("%.0f bytes in the write-ahead log, want the ~6 MB sent", wal)
			}

			found := filesContaining(t, cfg.DataDir, []byte(secretMarker))
			if encrypted && len(found) > 0 {
				t.Fatalf("span bytes in plain text in the encrypted data directory: %v", found)
			}
			if !encrypted && len(found) == 0 {
				t.Fatalf("control: no plain-text span bytes found without a key; the scan cannot tell")
			}
			t.Logf("files with the marker: %v", found)
		})
	}
}

// filesContaining returns the files under dir that contain needle.
func filesContaining(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, needle) {
			found = append(found, filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
