package observability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// The access log's lines decode to what the Logger writes for the same
// request, field for field, whatever the path holds.
func TestAccessLogWritesTheLoggersShape(t *testing.T) {
	for _, path := range []string{
		"/api/v1/products/p1",
		`/api/v1/products/"quoted"\back`,
		"/api/v1/products/tab\there\x01nul\x00",
		"/api/v1/products/café-☕",
		"/api/v1/products/bad\xffutf8",
	} {
		rec := observability.AccessRecord{
			Method: "GET", Route: "/api/v1/products/{id}", Path: path, Status: 200,
			Duration: 1234567 * time.Nanosecond, Bytes: 452, ClientIP: "127.0.0.1",
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", UserID: "u1", RequestID: "req-1",
		}
		var fast bytes.Buffer
		observability.NewAccessLog(&fast, "gateway").Write(&rec)
		require.True(t, strings.HasSuffix(fast.String(), "}\n"), "one line")
		require.Equal(t, 1, strings.Count(fast.String(), "\n"), "one line")

		var slow bytes.Buffer
		logger := observability.NewLogger(&slow, "gateway", slog.LevelInfo)
		logger.LogAttrs(observability.WithRequestID(context.Background(), rec.RequestID), slog.LevelInfo, "request served",
			slog.String("method", rec.Method), slog.String("route", rec.Route), slog.String("path", rec.Path),
			slog.Int("status", rec.Status), slog.Float64("duration_ms", 1.234), slog.Int64("bytes", rec.Bytes),
			slog.String("client_ip", rec.ClientIP), slog.String("trace_id", rec.TraceID), slog.String("user_id", rec.UserID))

		got, want := decodeLine(t, fast.Bytes()), decodeLine(t, slow.Bytes())
		gotTime, err := time.Parse(time.RFC3339Nano, got["time"].(string))
		require.NoError(t, err)
		require.WithinDuration(t, time.Now(), gotTime, time.Minute)
		delete(got, "time")
		delete(want, "time")
		require.Equal(t, want, got, "path %q", path)
	}
}

func TestAccessLogLeavesOutEmptyOptionalFields(t *testing.T) {
	var buf bytes.Buffer
	observability.NewAccessLog(&buf, "gateway").Write(&observability.AccessRecord{Method: "GET", Route: "unmatched", Path: "/x", Status: 404})
	line := decodeLine(t, buf.Bytes())
	require.NotContains(t, line, "trace_id")
	require.NotContains(t, line, "user_id")
	require.NotContains(t, line, "request_id")
	require.Equal(t, float64(404), line["status"])
	require.Equal(t, float64(0), line["duration_ms"])
}

func decodeLine(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	return m
}
