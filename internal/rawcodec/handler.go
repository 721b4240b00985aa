package rawcodec

import (
	"context"

	"google.golang.org/grpc"
)

// Unary makes a unary gRPC method handler of f for a server using Codec:
// f gets the request's bytes and returns the response's. It ignores
// interceptors, as the raw services of this project have none.
func Unary(f func(ctx context.Context, req []byte) ([]byte, error)) grpc.MethodHandler {
	return func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var req []byte
		if err := dec(&req); err != nil {
			return nil, err
		}
		resp, err := f(ctx, req)
		if err != nil {
			return nil, err
		}
		return &resp, nil
	}
}
