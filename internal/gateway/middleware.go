package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// propagator carries W3C trace context from the HTTP request into the
// server span and from the span into gRPC metadata. It is set explicitly so
// propagation does not depend on global state, and it leaves baggage out: at
// the public edge that would be arbitrary client data passed into every
// service.
var propagator = propagation.TraceContext{}

// exchange is the gateway's state for one request, allocated once by the
// outermost middleware and shared by the rest through the context. Only the
// request's own goroutine touches it.
type exchange struct {
	rw        responseRecorder
	routes    routeTable
	method    string
	requestID string
	clientIP  string
	route     string
	userID    string
	traceID   trace.TraceID
	// bodyTooLarge is set when reading the body hit the body limit.
	bodyTooLarge bool
	// upstreamCalled is set once a gRPC call was made for the request.
	upstreamCalled bool
}

type exchangeKey struct{}

// routeOrUnmatched is the route pattern, or "unmatched" when no route
// claimed the request.
func (ex *exchange) routeOrUnmatched() string {
	if ex.route == "" {
		return "unmatched"
	}
	return ex.route
}

// status is the response status: 200 when the handler wrote nothing, 500
// when it did not complete (it panicked, and recovery answers 500).
func (ex *exchange) status(completed bool) int {
	switch {
	case !completed:
		return http.StatusInternalServerError
	case ex.rw.status == 0:
		return http.StatusOK
	}
	return ex.rw.status
}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// setRoute records the matched route pattern for the access log, the
// metrics and the span name.
func setRoute(ctx context.Context, pattern string) {
	ex := exchangeFrom(ctx)
	if ex == nil || ex.route == pattern {
		return
	}
	ex.route = pattern
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetName(ex.method + " " + pattern)
		span.SetAttributes(semconv.HTTPRoute(pattern))
	}
}

// responseRecorder remembers the status and size of the response.
type responseRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *responseRecorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *responseRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush lets streaming responses through.
func (r *responseRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (r *responseRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// requestIDHeader is server.RequestIDHeader in canonical form, which
// header lookups need no conversion for.
const requestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds an accepted X-Request-Id.
const maxRequestIDLen = 128

// validRequestID accepts ids a caller may choose: short, and made of
// characters that are safe in logs, headers and metadata.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !requestIDChar(id[i]) {
			return false
		}
	}
	return true
}

func requestIDChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// requestIDs makes request ids: a random prefix drawn once per process and
// a counter. They are unique across processes and restarts like UUIDs,
// without reading the system's random source on every request. They are
// labels for correlating logs, not secrets.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (ids *requestIDs) next() string {
	var buf [48]byte
	b := append(buf[:0], ids.prefix...)
	return string(strconv.AppendUint(b, ids.n.Add(1), 36))
}

// requestID sets up the exchange: the request id (the caller's when sane,
// else a new one), echoed in the response and forwarded upstream, and the
// client IP, which is also what upstreams receive as x-forwarded-for.
func (g *Gateway) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := &exchange{rw: responseRecorder{ResponseWriter: w}, routes: g.routes, method: r.Method}
		id := r.Header.Get(requestIDHeader)
		if !validRequestID(id) {
			id = g.ids.next()
			r.Header.Set(requestIDHeader, id)
		}
		ex.requestID = id
		ex.clientIP = g.clientIP(r)
		w.Header().Set(requestIDHeader, id)
		ctx := context.WithValue(observability.WithRequestID(r.Context(), id), exchangeKey{}, ex)
		next.ServeHTTP(&ex.rw, r.WithContext(ctx))
	})
}

// clientIP finds the caller's address and rewrites the request so the
// x-forwarded-for sent upstream is exactly that address: grpc-gateway
// forwards RemoteAddr, plus any X-Forwarded-For the client sent, which
// must not be passed on unchecked.
func (g *Gateway) clientIP(r *http.Request) string {
	host, port, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if g.cfg.TrustForwardedFor {
		if ip, ok := lastForwardedFor(r.Header.Values("X-Forwarded-For")); ok {
			host = ip
			r.RemoteAddr = net.JoinHostPort(ip, port)
		}
	}
	r.Header.Del("X-Forwarded-For")
	return host
}

// lastForwardedFor returns the last address in X-Forwarded-For: the one the
// trusted proxy appended. Earlier entries are whatever the client claimed.
func lastForwardedFor(values []string) (string, bool) {
	if len(values) == 0 {
		return "", false
	}
	last := values[len(values)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	addr, err := netip.ParseAddr(strings.TrimSpace(last))
	if err != nil {
		return "", false
	}
	return addr.Unmap().String(), true
}

// recovery turns a panic into a 500 problem. A panic after the response
// started cannot be turned into anything; the connection is aborted.
func (g *Gateway) recovery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler { //nolint:errorlint // the sentinel is panicked with as is
				panic(p)
			}
			g.log.ErrorContext(r.Context(), "panic serving request",
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if ex := exchangeFrom(r.Context()); ex != nil && ex.rw.status != 0 {
				panic(http.ErrAbortHandler)
			}
			writeProblem(w, r, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(w, r)
	})
}

// accessLog writes one line per request when it is done, with the request
// id and, once the tracing middleware further in has started the span, the
// trace id. It writes through Config.AccessLog when that is set, else
// through the logger.
func (g *Gateway) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if !g.log.Enabled(ctx, slog.LevelInfo) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		completed := false
		defer func() {
			ex := exchangeFrom(ctx)
			rec := observability.AccessRecord{
				Method:    r.Method,
				Route:     ex.routeOrUnmatched(),
				Path:      r.URL.Path,
				Status:    ex.status(completed),
				Duration:  time.Since(start),
				Bytes:     ex.rw.bytes,
				ClientIP:  ex.clientIP,
				UserID:    ex.userID,
				RequestID: ex.requestID,
			}
			if ex.traceID.IsValid() {
				rec.TraceID = ex.traceID.String()
			}
			if g.access != nil {
				g.access.Write(&rec)
				return
			}
			attrs := make([]slog.Attr, 0, 10)
			attrs = append(attrs,
				slog.String("method", rec.Method),
				slog.String("route", rec.Route),
				slog.String("path", rec.Path),
				slog.Int("status", rec.Status),
				slog.Float64("duration_ms", float64(rec.Duration.Microseconds())/1000),
				slog.Int64("bytes", rec.Bytes),
				slog.String("client_ip", rec.ClientIP),
			)
			if rec.TraceID != "" {
				attrs = append(attrs, slog.String("trace_id", rec.TraceID))
			}
			if rec.UserID != "" {
				attrs = append(attrs, slog.String("user_id", rec.UserID))
			}
			// request_id comes from the context: the logger stamps it.
			g.log.LogAttrs(ctx, slog.LevelInfo, "request served", attrs...)
		}()
		next.ServeHTTP(w, r)
		completed = true
	})
}

// metricsMiddleware records the RED metrics of every request, labelled by
// its route pattern. A panicking request counts as the 500 it becomes.
func (g *Gateway) metricsMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		completed := false
		defer func() {
			ex := exchangeFrom(r.Context())
			g.metrics.Observe(r.Method, ex.routeOrUnmatched(), ex.status(completed), time.Since(start))
		}()
		next.ServeHTTP(w, r)
		completed = true
	})
}

// tracing starts the server span, continuing the caller's W3C
// traceparent; the gRPC client span of the upstream call is its child. It
// is written against the OpenTelemetry API rather than with otelhttp, which
// builds its attribute sets and metrics on every request whether or not the
// span is sampled (the RED metrics are Prometheus's job here): that was a
// tenth of the gateway's CPU per request. The span is named
// "METHOD route" once the route is known (setRoute).
func (g *Gateway) tracing(next http.Handler) http.Handler {
	tracer := otel.Tracer("github.com/mercato-dev/mercato/internal/gateway")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		ex := exchangeFrom(ctx)
		ex.traceID = span.SpanContext().TraceID()
		recording := span.IsRecording()
		if recording {
			span.SetAttributes(
				semconv.HTTPRequestMethodKey.String(r.Method),
				semconv.URLPath(r.URL.Path),
				semconv.ClientAddress(ex.clientIP),
				semconv.UserAgentOriginal(r.UserAgent()),
				attribute.String("http.request_id", ex.requestID),
			)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
		if recording {
			status := ex.rw.status
			if status == 0 {
				status = http.StatusOK
			}
			span.SetAttributes(semconv.HTTPResponseStatusCode(status))
			if status >= http.StatusInternalServerError {
				span.SetStatus(otelcodes.Error, http.StatusText(status))
			}
		}
	})
}

// corsPolicy says which browser origins may call the API.
type corsPolicy struct {
	anyOrigin bool
	origins   map[string]bool
}

func newCORSPolicy(origins []string) corsPolicy {
	p := corsPolicy{origins: map[string]bool{}}
	for _, o := range origins {
		if o == "*" {
			p.anyOrigin = true
			continue
		}
		p.origins[strings.TrimSuffix(o, "/")] = true
	}
	return p
}

func (p corsPolicy) enabled() bool { return p.anyOrigin || len(p.origins) > 0 }

func (p corsPolicy) allows(origin string) bool { return p.anyOrigin || p.origins[origin] }

const (
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE"
	corsAllowHeaders  = "Authorization, Content-Type, If-Match, Idempotency-Key, X-Request-Id"
	corsExposeHeaders = "ETag, Retry-After, X-Request-Id"
	corsMaxAge        = "600"
)

// corsHandler answers preflight requests and marks responses to allowed
// origins. No credentials (cookies) are involved: tokens travel in the
// Authorization header, which is why "*" is safe to offer.
func (g *Gateway) corsHandler(next http.Handler) http.Handler {
	if !g.cors.enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := g.cors.allows(origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
			setRoute(r.Context(), "preflight")
			if !allowed {
				writeProblem(w, r, http.StatusForbidden, "origin not allowed")
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		next.ServeHTTP(w, r)
	})
}

// bodyLimit refuses bodies larger than the limit: at once when the length
// is declared, else when reading crosses it (the error handler turns that
// into 413).
func (g *Gateway) bodyLimit(next http.Handler) http.Handler {
	limit := g.cfg.BodyLimitBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			w.Header().Set("Connection", "close")
			writeProblem(w, r, http.StatusRequestEntityTooLarge, tooLargeDetail(limit))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			ex := exchangeFrom(r.Context())
			// The server's own writer, so it knows to close the connection
			// rather than read the rest of an oversized body.
			r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(ex.rw.ResponseWriter, r.Body, limit), ex: ex}
		}
		next.ServeHTTP(w, r)
	})
}

func tooLargeDetail(limit int64) string {
	return fmt.Sprintf("request body is larger than %d bytes", limit)
}

// limitedBody notes in the exchange that the body limit was hit:
// grpc-gateway reports the read error as a plain InvalidArgument.
type limitedBody struct {
	io.ReadCloser
	ex *exchange
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			b.ex.bodyTooLarge = true
		}
	}
	return n, err
}

// timeout gives the request its deadline; the gRPC client sends it on as
// the call's deadline, so the upstream stops working when the caller would
// no longer get the answer.
func (g *Gateway) timeout(next http.Handler) http.Handler {
	d := g.cfg.RequestTimeout
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
