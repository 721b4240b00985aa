// Package rawcodec is a gRPC codec that moves protobuf messages as bytes, so
// OTLP requests reach the wire scanner, and built requests reach the wire,
// without a generated-struct decode or encode.
//
// It registers nothing globally: servers opt in with
// grpc.ForceServerCodecV2(rawcodec.Codec{}) and clients per call with
// grpc.ForceCodecV2(rawcodec.Codec{}). Codec is stateless and safe for
// concurrent use.
package rawcodec
