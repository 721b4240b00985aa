package ingest

import (
	"errors"
	"fmt"

	"google.golang.org/grpc"
)

// Config configures the receivers.
type Config struct {
	// GRPCAddr is the OTLP/gRPC listen address; empty disables it.
	// Flag --otlp-grpc. Default 127.0.0.1:4317.
	GRPCAddr string
	// HTTPAddr is the OTLP/HTTP listen address; empty disables it.
	// Flag --otlp-http. Default 127.0.0.1:4318.
	HTTPAddr string
	// MaxRequestBytes bounds a request's size, compressed and decompressed.
	// Default 16 MiB.
	MaxRequestBytes int
	// RegisterGRPC, if set, registers more services on the OTLP/gRPC server
	// before it starts (the cluster's peer service). Its server decodes
	// messages with rawcodec: handlers receive *[]byte.
	RegisterGRPC func(*grpc.Server)
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{GRPCAddr: "127.0.0.1:4317", HTTPAddr: "127.0.0.1:4318", MaxRequestBytes: 16 << 20}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.GRPCAddr == "" && c.HTTPAddr == "" {
		errs = append(errs, errors.New("no receiver: set otlp_grpc (--otlp-grpc) or otlp_http (--otlp-http)"))
	}
	if c.MaxRequestBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_request_bytes must be at least 1KiB, got %d", c.MaxRequestBytes))
	}
	return errors.Join(errs...)
}
