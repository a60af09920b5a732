package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// UnaryServerInterceptor authenticates every call: a call carrying a valid
// bearer token gets a Principal in its context; an anonymous call is
// refused unless its method is in public (full method names, e.g.
// "/catalog.v1.CatalogService/GetProduct"); a call with an invalid token is
// refused, except that a public method then runs anonymously — a client
// whose access token just expired must still be able to refresh or log in
// while it keeps sending the old one, and anonymous callers may call public
// methods anyway. Handlers still decide what a principal may do
// (RequireAdmin, ownership).
func UnaryServerInterceptor(v *Verifier, logger *slog.Logger, public ...string) grpc.UnaryServerInterceptor {
	open := make(map[string]bool, len(public))
	for _, m := range public {
		open[m] = true
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		anonymousOK := open[info.FullMethod] || isInfrastructure(info.FullMethod)
		token := tokenFromMetadata(ctx)
		if token == "" {
			if anonymousOK {
				return handler(ctx, req)
			}
			return nil, ErrMissingToken
		}
		p, err := v.Verify(ctx, token)
		if err != nil {
			logger.InfoContext(ctx, "access token rejected", "method", info.FullMethod, "reason", err.Error())
			if anonymousOK {
				return handler(ctx, req)
			}
			if errors.Is(err, ErrKeysUnavailable) {
				return nil, ErrKeysUnavailable
			}
			return nil, ErrInvalidToken
		}
		return handler(WithPrincipal(ctx, p), req)
	}
}

func isInfrastructure(method string) bool {
	return method == "/grpc.health.v1.Health/Check" || method == "/grpc.health.v1.Health/Watch"
}

func tokenFromMetadata(ctx context.Context) string {
	// One key, read without copying the whole metadata map.
	for _, v := range metadata.ValueFromIncomingContext(ctx, "authorization") {
		if t, ok := BearerToken(v); ok {
			return t
		}
	}
	return ""
}

// OutgoingToken returns ctx with the principal's token attached to outgoing
// gRPC metadata, for calls made on the caller's behalf.
func OutgoingToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", fmt.Sprintf("Bearer %s", token))
}
