package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// problem is an RFC 9457 problem details document.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Instance  string `json:"instance"`
	RequestID string `json:"request_id"`
}

// problemContentType is the media type of problem details (RFC 9457).
const problemContentType = "application/problem+json"

// statusClientClosedRequest is the conventional status of a request whose
// caller went away before the answer (it is never seen by that caller).
const statusClientClosedRequest = 499

// writeProblem answers with a problem. detail must be safe to show a client.
func writeProblem(w http.ResponseWriter, r *http.Request, code int, detail string) {
	title := http.StatusText(code)
	if code == statusClientClosedRequest {
		title = "Client Closed Request"
	}
	p := problem{
		Type:     "about:blank",
		Title:    title,
		Status:   code,
		Detail:   detail,
		Instance: r.URL.Path,
	}
	if ex := exchangeFrom(r.Context()); ex != nil {
		p.RequestID = ex.requestID
		if ex.route == "" {
			if pattern := ex.routes.match(r.URL.Path); pattern != "" {
				setRoute(r.Context(), pattern)
			}
		}
	}
	body, err := json.Marshal(p)
	if err != nil { // cannot happen: the fields are strings and ints
		body = []byte(`{"type":"about:blank","status":500}`)
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", problemContentType)
	h.Set("Cache-Control", "no-store")
	if code == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Bearer realm="mercato"`)
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// handleError turns an error from a transcoded call into a problem.
func (g *Gateway) handleError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if pattern, ok := runtime.HTTPPathPattern(ctx); ok {
		setRoute(ctx, pattern)
	}
	ex := exchangeFrom(ctx)
	var httpErr *runtime.HTTPStatusError
	if errors.As(err, &httpErr) {
		writeProblem(w, r, httpErr.HTTPStatus, strings.ToLower(http.StatusText(httpErr.HTTPStatus)))
		return
	}
	if ex != nil && ex.bodyTooLarge {
		w.Header().Set("Connection", "close")
		writeProblem(w, r, http.StatusRequestEntityTooLarge, tooLargeDetail(g.cfg.BodyLimitBytes))
		return
	}

	st := grpcStatus(err)
	md, _ := runtime.ServerMetadataFromContext(ctx)
	copyHeaders(w.Header(), md.HeaderMD)
	copyHeaders(w.Header(), md.TrailerMD)
	fromService := ex != nil && ex.upstreamCalled
	code, detail := problemFor(st, fromService)
	if code == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// The service has no instance that answers (or one said it is
		// overloaded): worth trying again in a moment.
		w.Header().Set("Retry-After", "1")
	}
	if code >= 500 && code != http.StatusNotImplemented {
		// The client sees at most a fixed detail; the real error is here,
		// under the request id the client was given.
		level := slog.LevelWarn
		if code == http.StatusInternalServerError {
			level = slog.LevelError
		}
		method, _ := runtime.RPCMethod(ctx)
		g.log.Log(ctx, level, "upstream call failed",
			"rpc", method, "code", st.Code().String(), "error", err.Error())
	}
	writeProblem(w, r, code, detail)
}

// grpcStatus finds the status in err. Unlike status.Convert it keeps the
// service's own message when the client wrapped the status (as it does
// after exhausting retries).
func grpcStatus(err error) *status.Status {
	var withStatus interface{ GRPCStatus() *status.Status }
	if errors.As(err, &withStatus) {
		if st := withStatus.GRPCStatus(); st != nil {
			return st
		}
	}
	return status.Convert(err)
}

// copyHeaders passes the headers a service may set on an error (ETag of the
// current version, Retry-After) to the client.
func copyHeaders(h http.Header, md metadata.MD) {
	for k, vs := range md {
		if name, ok := outgoingHeader(k); ok && len(vs) > 0 && h.Get(name) == "" {
			h.Set(name, vs[0])
		}
	}
}

// problemFor maps a gRPC status to an HTTP status and a client-safe detail.
// fromService says the status came back from a service (rather than from
// decoding the request in the gateway).
//
// A service's kinded errors carry an ErrorInfo whose reason is the apperr
// kind; its message is client-safe. Statuses without it on the codes the
// gRPC machinery itself produces (a refused connection, a missing method,
// a blown deadline) describe the plumbing, not the request, so they get a
// fixed detail. Internal errors are always masked.
func problemFor(st *status.Status, fromService bool) (int, string) {
	reason, kinded := errorReason(st)
	msg := st.Message()
	if kinded && reason == apperr.Unprocessable.String() {
		return http.StatusUnprocessableEntity, msg
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		if !fromService {
			return http.StatusBadRequest, requestDetail(msg)
		}
		return http.StatusBadRequest, msg
	case codes.NotFound:
		return http.StatusNotFound, msg
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict, msg
	case codes.Unauthenticated:
		return http.StatusUnauthorized, msg
	case codes.PermissionDenied:
		return http.StatusForbidden, msg
	case codes.FailedPrecondition:
		if kinded && reason == apperr.PreconditionFailed.String() {
			return http.StatusPreconditionFailed, msg
		}
		return http.StatusBadRequest, msg
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests, safe(kinded, msg, "too many requests")
	case codes.Unavailable:
		return http.StatusServiceUnavailable, safe(kinded, msg, "service unavailable, try again later")
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout, safe(kinded, msg, "request timed out")
	case codes.Unimplemented:
		return http.StatusNotImplemented, safe(kinded, msg, "not implemented")
	case codes.Canceled:
		return statusClientClosedRequest, "request cancelled"
	default: // Internal, Unknown, DataLoss and anything new
		return http.StatusInternalServerError, "internal error"
	}
}

func safe(kinded bool, msg, fallback string) string {
	if kinded && msg != "" {
		return msg
	}
	return fallback
}

// errorReason returns the reason of the status's mercato ErrorInfo.
func errorReason(st *status.Status) (string, bool) {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == server.ErrorDomain {
			return info.GetReason(), true
		}
	}
	return "", false
}

// requestDetail words an error from decoding the request (JSON body, path
// or query parameters) for the client. protojson names fields by their
// lowerCamel JSON name; the API speaks the proto (snake_case) names.
func requestDetail(msg string) string {
	msg = strings.TrimSpace(strings.TrimPrefix(msg, "proto:"))
	if msg == "" {
		return "invalid request"
	}
	msg = camelField.ReplaceAllStringFunc(msg, func(m string) string {
		return "field " + snakeCase(strings.TrimPrefix(m, "field "))
	})
	return "invalid request: " + msg
}

var camelField = regexp.MustCompile(`field [a-z][a-zA-Z0-9]*`)

func snakeCase(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// handleRoutingError answers requests no route matched.
func (g *Gateway) handleRoutingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
	switch code {
	case http.StatusNotFound:
		writeProblem(w, r, code, "no such route")
	case http.StatusMethodNotAllowed:
		writeProblem(w, r, code, "method not allowed on this route")
	case http.StatusBadRequest:
		writeProblem(w, r, code, "malformed request path")
	default:
		writeProblem(w, r, code, strings.ToLower(http.StatusText(code)))
	}
}
