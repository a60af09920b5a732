package gateway

import (
	"context"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// jsonMarshaler is the one JSON configuration of the public API: proto
// field names (snake_case), every field present in responses, and unknown
// fields in requests refused, so a client cannot slip in fields such as
// "role" or "id" that the API does not take from it (mass assignment).
var jsonMarshaler = &runtime.JSONPb{
	MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
}

// newTranscoder returns the grpc-gateway mux with the gateway's marshaler,
// header mapping, status codes and problem-details errors.
func (g *Gateway) newTranscoder() *runtime.ServeMux {
	return runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &planMarshaler{JSONPb: jsonMarshaler}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithForwardResponseOption(g.forwardResponse),
		runtime.WithErrorHandler(g.handleError),
		runtime.WithRoutingErrorHandler(g.handleRoutingError),
		// Both would let a request run as another method than the one
		// the route policy saw (POST turned into GET or DELETE).
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithDisablePathLengthFallback(),
		runtime.WithWriteContentLength(),
	)
}

// incomingHeader selects the request headers passed to the services as gRPC
// metadata. Authorization is not listed: grpc-gateway always forwards it
// (as "authorization"), and matching it here would send it twice.
// X-Forwarded-For is set by grpc-gateway from the client address.
func incomingHeader(key string) (string, bool) {
	switch key {
	case "If-Match":
		return "if-match", true
	case "Idempotency-Key":
		return "idempotency-key", true
	case requestIDHeader:
		return "x-request-id", true
	}
	return "", false
}

// outgoingHeader selects the gRPC response headers shown to clients;
// nothing else about the services leaks out.
func outgoingHeader(key string) (string, bool) {
	switch key {
	case "etag":
		return "ETag", true
	case "retry-after":
		return "Retry-After", true
	}
	return "", false
}

// forwardResponse runs before a successful response is written: it records
// the route and sets the status of methods that do not answer 200. A 204
// carries no body, so no content type either.
func (g *Gateway) forwardResponse(ctx context.Context, w http.ResponseWriter, _ proto.Message) error {
	if pattern, ok := runtime.HTTPPathPattern(ctx); ok {
		setRoute(ctx, pattern)
	}
	method, _ := runtime.RPCMethod(ctx)
	if code, ok := g.statuses[method]; ok {
		if code == http.StatusNoContent {
			w.Header().Del("Content-Type")
		}
		w.WriteHeader(code)
	}
	return nil
}
