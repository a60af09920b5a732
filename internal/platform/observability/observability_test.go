package observability_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/mercato-dev/mercato/internal/platform/observability"
)

func TestLoggerStampsServiceRequestAndTrace(t *testing.T) {
	var buf bytes.Buffer
	logger := observability.NewLogger(&buf, "catalog", slog.LevelInfo)

	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(observability.WithRequestID(t.Context(), "req-42"), "op")
	logger.InfoContext(ctx, "product created", "product_id", "p1")
	span.End()
	logger.DebugContext(ctx, "below the level")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1, "debug is below the configured level")
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	require.Equal(t, "catalog", rec["service"])
	require.Equal(t, "product created", rec["msg"])
	require.Equal(t, "req-42", rec["request_id"])
	require.Equal(t, span.SpanContext().TraceID().String(), rec["trace_id"])
	require.Equal(t, "p1", rec["product_id"])
}

func TestHTTPMetricsLabelRoutesAndMethodsFromFixedSets(t *testing.T) {
	reg := observability.NewRegistry()
	m := observability.NewHTTPMetrics(reg)
	m.Observe(http.MethodGet, "/api/v1/products/{id}", http.StatusNotFound, time.Millisecond)
	m.Observe(http.MethodGet, "/api/v1/products/{id}", http.StatusNotFound, 3*time.Millisecond)
	m.Observe(http.MethodGet, "/api/v1/products/{id}", http.StatusOK, time.Millisecond)
	m.Observe("BREW", "unmatched", http.StatusNotImplemented, time.Millisecond)
	m.Observe("STEEP", "unmatched", http.StatusNotImplemented, time.Millisecond)

	rec := httptest.NewRecorder()
	observability.MetricsHandler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	require.Contains(t, body, `http_requests_total{code="404",method="GET",route="/api/v1/products/{id}"} 2`)
	require.Contains(t, body, `http_requests_total{code="200",method="GET",route="/api/v1/products/{id}"} 1`)
	require.Contains(t, body, `http_request_duration_seconds_count{method="GET",route="/api/v1/products/{id}"} 3`)
	require.Contains(t, body, `http_request_duration_seconds_sum{method="GET",route="/api/v1/products/{id}"} 0.005`)
	require.Contains(t, body, `http_requests_total{code="501",method="OTHER",route="unmatched"} 2`,
		"methods outside HTTP's own share one label value")
	require.NotContains(t, body, "BREW")
	require.Contains(t, body, "go_goroutines", "runtime collectors are registered")
}

func TestSetupTracingInstallsPropagator(t *testing.T) {
	shutdown, err := observability.SetupTracing(t.Context(), "test")
	require.NoError(t, err)
	t.Cleanup(func() { _ = shutdown(t.Context()) })
	fields := otel.GetTextMapPropagator().Fields()
	require.Contains(t, fields, "traceparent")
}

func TestSpansCarryIDsWithoutAnExporter(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	shutdown, err := observability.SetupTracing(t.Context(), "test")
	require.NoError(t, err)
	t.Cleanup(func() { _ = shutdown(t.Context()) })

	_, span := otel.Tracer("test").Start(t.Context(), "op")
	defer span.End()
	require.True(t, span.SpanContext().HasTraceID(), "logs and propagation still get a trace id")
	require.False(t, span.IsRecording(), "nothing records spans no one exports")
}
