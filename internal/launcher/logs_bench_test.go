package launcher

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// relayChunk is one read from a busy gateway's stdout: access-log lines as
// the gateway writes them, with a service log line now and then.
func relayChunk(lines int) []byte {
	var buf bytes.Buffer
	access := observability.NewAccessLog(&buf, "gateway")
	logger := observability.NewLogger(&buf, "gateway", slog.LevelInfo)
	ctx := observability.WithRequestID(context.Background(), "9f86d081884c7d65-1a")
	for i := range lines {
		if i%16 == 15 {
			logger.WarnContext(ctx, "upstream slow", "upstream", "catalog", "took", "812ms", "err", `rpc error: code = DeadlineExceeded desc = "context deadline exceeded"`)
			continue
		}
		access.Write(&observability.AccessRecord{
			Method: "GET", Route: "/api/v1/products/{id}", Path: "/api/v1/products/0193a5f2-7c1e-7d5a-9b2e-3f4c5d6e7f80", Status: 200,
			Duration: 1234 * time.Microsecond, Bytes: 452, ClientIP: "127.0.0.1",
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", RequestID: "9f86d081884c7d65-1a",
		})
	}
	return buf.Bytes()
}

func benchmarkLogRelay(b *testing.B, text *textFormat) {
	const lines = 64
	chunk := relayChunk(lines)
	w := newLogSink(io.Discard, text != nil && text.color, text, []string{"mercato", "gateway"}).writer("gateway")
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_, _ = w.Write(chunk)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}

// BenchmarkLogRelayJSON is the relay of `--log-format json`: prefix and
// copy, one Write per read.
func BenchmarkLogRelayJSON(b *testing.B) { benchmarkLogRelay(b, nil) }

// BenchmarkLogRelayText is the relay of `--log-format text`, colours on.
func BenchmarkLogRelayText(b *testing.B) { benchmarkLogRelay(b, &textFormat{color: true}) }
