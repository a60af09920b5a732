package server

import (
	"context"
	"errors"
	"log/slog"
	"maps"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// ErrorDomain names mercato in the ErrorInfo detail attached to every error,
// whose Reason is the apperr kind. The gateway uses the reason to pick HTTP
// statuses gRPC has no code for (412, 422, 429).
const ErrorDomain = "mercato"

// CauseKey is the ErrorInfo metadata key carrying an error's apperr.Cause.
// The rest of the metadata is the error's apperr.Metadata.
const CauseKey = "cause"

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
// code; anything else becomes a masked Internal error. A kinded error
// carries an ErrorInfo (its kind as the reason, its cause and metadata as
// metadata) and, when it is retryable, a RetryInfo: what a calling service
// acts on, instead of the message.
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
	e, ok := apperr.As(err)
	if !ok {
		return status.New(codes.Internal, "internal error")
	}
	code, ok := grpcCodes[e.Kind]
	if !ok {
		return status.New(codes.Internal, "internal error")
	}
	st := status.New(code, e.Message)
	info := &errdetails.ErrorInfo{Reason: e.Kind.String(), Domain: ErrorDomain}
	if e.Cause != "" || len(e.Metadata) > 0 {
		info.Metadata = make(map[string]string, len(e.Metadata)+1)
		maps.Copy(info.Metadata, e.Metadata)
		if e.Cause != "" {
			info.Metadata[CauseKey] = e.Cause
		}
	}
	details := []protoadapt.MessageV1{info}
	if e.Retryable {
		details = append(details, &errdetails.RetryInfo{})
	}
	if withDetails, err := st.WithDetails(details...); err == nil {
		return withDetails
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
