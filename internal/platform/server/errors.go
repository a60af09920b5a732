package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// ErrorDomain names mercato in the ErrorInfo detail attached to every error,
// whose Reason is the apperr kind. The gateway uses the reason to pick HTTP
// statuses gRPC has no code for (412, 422, 429).
const ErrorDomain = "mercato"

// grpcCodes maps each error kind to its gRPC code.
var grpcCodes = map[apperr.Kind]codes.Code{
	apperr.Invalid:            codes.InvalidArgument,
	apperr.NotFound:           codes.NotFound,
	apperr.Conflict:           codes.AlreadyExists,
	apperr.Unauthenticated:    codes.Unauthenticated,
	apperr.Forbidden:          codes.PermissionDenied,
	apperr.PreconditionFailed: codes.FailedPrecondition,
	apperr.Unavailable:        codes.Unavailable,
	apperr.TooManyRequests:    codes.ResourceExhausted,
	apperr.Unprocessable:      codes.InvalidArgument,
}

// Status turns err into a gRPC status: a kinded error keeps its message and
// code; anything else becomes a masked Internal error.
func Status(err error) *status.Status {
	if st, ok := status.FromError(err); ok {
		return st
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request cancelled")
	}
	kind, msg := apperr.Public(err)
	code, ok := grpcCodes[kind]
	if !ok {
		return status.New(codes.Internal, "internal error")
	}
	st := status.New(code, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: kind.String(), Domain: ErrorDomain}); err == nil {
		return withInfo
	}
	return st
}

// ErrorMapping is the one place a service's errors become gRPC statuses.
// Internal errors are logged with their detail and masked for the caller.
func ErrorMapping(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err == nil {
			return resp, nil
		}
		st := Status(err)
		if st.Code() == codes.Internal || st.Code() == codes.Unknown {
			logger.ErrorContext(ctx, "request failed", "method", info.FullMethod, "error", err.Error())
		}
		return nil, st.Err()
	}
}

// RequestIDHeader is the metadata key (and HTTP header) carrying the request id.
const RequestIDHeader = "x-request-id"

// requestIDUnary reads one key with ValueFromIncomingContext, which unlike
// FromIncomingContext does not copy the whole metadata map on every call.
func requestIDUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if ids := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(ids) > 0 && ids[0] != "" {
		ctx = observability.WithRequestID(ctx, ids[0])
	}
	return handler(ctx, req)
}
