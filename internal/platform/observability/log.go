// Package observability sets up the three signals every process emits:
// JSON logs (log/slog) carrying service, request_id and trace_id; Prometheus
// metrics; and OpenTelemetry traces propagated with W3C trace context.
package observability

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id carried by ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// NewLogger returns a JSON logger that stamps every record with the service
// name and, when the context has them, the request id and trace id. Log with
// the *Context methods so these can be found. When w buffers (a LogBuffer),
// a record at warning level or above is flushed at once.
func NewLogger(w io.Writer, service string, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	f, _ := w.(flusher)
	return slog.New(contextHandler{Handler: h, flush: f}).With("service", service)
}

type flusher interface{ Flush() error }

// contextHandler adds request_id and trace_id from the record's context.
type contextHandler struct {
	slog.Handler
	flush flusher
}

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	err := h.Handler.Handle(ctx, r)
	if h.flush != nil && r.Level >= slog.LevelWarn {
		_ = h.flush.Flush()
	}
	return err
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{Handler: h.Handler.WithAttrs(attrs), flush: h.flush}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{Handler: h.Handler.WithGroup(name), flush: h.flush}
}
