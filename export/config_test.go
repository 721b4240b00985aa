package export

import (
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		errs []string // substrings, one per expected problem; none: valid
	}{
		{name: "zero value means defaults", cfg: Config{}},
		{name: "defaults", cfg: DefaultConfig()},
		{name: "grpc", cfg: Config{Endpoint: "collector.internal:4317"}},
		{name: "grpc ipv6", cfg: Config{Endpoint: "[::1]:4317"}},
		{name: "http", cfg: Config{Endpoint: "http://127.0.0.1:4318"}},
		{name: "https with path", cfg: Config{Endpoint: "https://otlp.example.com/api/v1/traces"}},
		{name: "no port", cfg: Config{Endpoint: "collector"}, errs: []string{`Endpoint "collector"`}},
		{name: "bad port", cfg: Config{Endpoint: "collector:http"}, errs: []string{"port"}},
		{name: "no host", cfg: Config{Endpoint: ":4317"}, errs: []string{`Endpoint ":4317"`}},
		{name: "url without host", cfg: Config{Endpoint: "http:///v1/traces"}, errs: []string{"no host"}},
		{name: "other scheme", cfg: Config{Endpoint: "grpc://collector:4317"}, errs: []string{"Endpoint"}},
		{
			name: "every problem reported",
			cfg: Config{Endpoint: "x", BatchMaxBytes: -1, MaxRequestBytes: -1, BatchTimeout: -1, QueueSize: -1, Workers: -2,
				Timeout: -time.Second, RetryInitial: -1, RetryMax: -1, RetryMaxElapsed: -1},
			errs: []string{"Endpoint", "BatchMaxBytes", "MaxRequestBytes", "BatchTimeout", "QueueSize", "Workers", "Timeout",
				"RetryInitial", "RetryMax ", "RetryMaxElapsed"},
		},
		{name: "small requests", cfg: Config{MaxRequestBytes: 64 << 10}}, // the default batch shrinks to fit
		{
			name: "request size below the minimum",
			cfg:  Config{MaxRequestBytes: 512},
			errs: []string{"MaxRequestBytes (max_export_request_size, --max-export-request-size) is 512, must be at least 1024"},
		},
		{
			name: "batch bigger than a request",
			cfg:  Config{MaxRequestBytes: 64 << 10, BatchMaxBytes: 128 << 10},
			errs: []string{"BatchMaxBytes (131072) is more than MaxRequestBytes (65536, max_export_request_size)"},
		},
		{
			name: "retry max below initial",
			cfg:  Config{RetryInitial: time.Second, RetryMax: time.Millisecond},
			errs: []string{"RetryMax (1ms) is less than RetryInitial (1s)"},
		},
		{
			name: "retry max below default initial",
			cfg:  Config{RetryMax: time.Millisecond},
			errs: []string{"RetryMax"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors about %q", tc.errs)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.errs) {
				t.Errorf("Validate reported %d problems, want %d:\n%v", len(lines), len(tc.errs), err)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate = %v\nwant a problem mentioning %q", err, want)
				}
			}
			if _, err := New(tc.cfg, nil, nil); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestBatchMaxBytesDefault(t *testing.T) {
	for _, tc := range []struct{ maxRequest, batch, want int }{
		{0, 0, DefaultBatchMaxBytes},
		{64 << 10, 0, 64 << 10}, // lowered to fit a request
		{64 << 10, 16 << 10, 16 << 10},
		{16 << 20, 0, DefaultBatchMaxBytes},
	} {
		c := Config{MaxRequestBytes: tc.maxRequest, BatchMaxBytes: tc.batch}.EnsureDefaults()
		if c.BatchMaxBytes != tc.want {
			t.Errorf("MaxRequestBytes %d, BatchMaxBytes %d: default BatchMaxBytes = %d, want %d",
				tc.maxRequest, tc.batch, c.BatchMaxBytes, tc.want)
		}
	}
}

func TestEndpointPathDefault(t *testing.T) {
	for in, want := range map[string]string{
		"http://h:4318":          "http://h:4318/v1/traces",
		"http://h:4318/":         "http://h:4318/v1/traces",
		"https://h/custom":       "https://h/custom",
		"http://h:4318/?x=1":     "http://h:4318/v1/traces?x=1",
		"https://h/otlp/traces/": "https://h/otlp/traces/",
	} {
		ep, err := parseEndpoint(in)
		if err != nil || ep.kind != endpointHTTP || ep.target != want {
			t.Errorf("parseEndpoint(%q) = %+v, %v; want HTTP %q", in, ep, err, want)
		}
	}
}

func TestNewDoesNotModifyConfig(t *testing.T) {
	cfg := Config{Endpoint: "127.0.0.1:4317", Headers: map[string]string{"x-api-key": "k"}}
	before := cfg
	before.Headers = maps.Clone(cfg.Headers)
	e, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	shutdown(t, e)
	if !reflect.DeepEqual(cfg, before) {
		t.Errorf("New changed the caller's config: %+v", cfg)
	}
}

func TestNewDuplicateRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := New(Config{}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, e)
	if e2, err := New(Config{}, reg, nil); err == nil {
		shutdown(t, e2)
		t.Fatal("second New with the same registry succeeded, want a registration error")
	}
}
