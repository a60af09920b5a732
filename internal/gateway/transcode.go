package gateway

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

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

// newTranscoder returns a grpc-gateway mux writing JSON with json, and the
// gateway's header mapping, status codes and problem-details errors.
func (g *Gateway) newTranscoder(json runtime.Marshaler) *runtime.ServeMux {
	return runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, json),
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

// transcoders routes each request to a grpc-gateway mux holding only the
// services with routes under the request's resource: its path up to the
// third segment, such as /api/v1/products. grpc-gateway tries a method's
// routes one by one, copying the path and matching it against each, and
// with every service on one mux a product read went past a dozen other
// routes first. A resource that no route names goes to the mux of every
// service, which answers 404 or 405 as before.
type transcoders struct {
	byResource map[string]*runtime.ServeMux
	all        *runtime.ServeMux
}

// newTranscoders registers every upstream's routes on the shared mux and
// on the mux of each resource it serves. routes are the route templates
// of each upstream; if one has a variable within its resource, requests
// cannot be told apart by resource and everything goes to the shared mux.
func (g *Gateway) newTranscoders(ctx context.Context, pool *upstreamPool, routes map[string][]string) (*transcoders, error) {
	json := &planMarshaler{JSONPb: jsonMarshaler} // one plan cache for every mux
	t := &transcoders{byResource: map[string]*runtime.ServeMux{}, all: g.newTranscoder(json)}
	for _, u := range g.cfg.Upstreams {
		if err := u.API.Register(ctx, t.all, pool.conn(u.Name)); err != nil {
			return nil, fmt.Errorf("register %s routes: %w", u.Name, err)
		}
	}
	servedBy := map[string][]string{} // resource -> upstreams, in upstream order
	for _, u := range g.cfg.Upstreams {
		for _, route := range routes[u.Name] {
			res := resource(route)
			if strings.Contains(res, "{") {
				return &transcoders{all: t.all}, nil
			}
			if !slices.Contains(servedBy[res], u.Name) {
				servedBy[res] = append(servedBy[res], u.Name)
			}
		}
	}
	bySet := map[string]*runtime.ServeMux{} // one mux per set of upstreams
	for res, names := range servedBy {
		set := strings.Join(names, ",")
		mux, ok := bySet[set]
		if !ok {
			mux = g.newTranscoder(json)
			for _, u := range g.cfg.Upstreams {
				if slices.Contains(names, u.Name) {
					if err := u.API.Register(ctx, mux, pool.conn(u.Name)); err != nil {
						return nil, fmt.Errorf("register %s routes: %w", u.Name, err)
					}
				}
			}
			bySet[set] = mux
		}
		t.byResource[res] = mux
	}
	return t, nil
}

func (t *transcoders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if mux, ok := t.byResource[resource(r.URL.Path)]; ok {
		mux.ServeHTTP(w, r)
		return
	}
	t.all.ServeHTTP(w, r)
}

// resource returns path up to its third segment: /api/v1/products for
// /api/v1/products/{id}, and the whole of a shorter path.
func resource(path string) string {
	slashes := 0
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			if slashes++; slashes == 3 {
				return path[:i]
			}
		}
	}
	return path
}
