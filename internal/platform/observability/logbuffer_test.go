package observability_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// countingWriter records every Write it gets.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *countingWriter) read() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), w.writes
}

func TestLogBufferBatchesLinesUntilFlush(t *testing.T) {
	out := &countingWriter{}
	b := observability.NewLogBuffer(out, time.Hour, 1<<20)
	logger := observability.NewLogger(b, "gateway", slog.LevelInfo)
	for i := range 100 {
		logger.Info("request served", "n", i)
	}
	got, writes := out.read()
	require.Empty(t, got, "lines wait for the flush")
	require.Zero(t, writes)

	require.NoError(t, b.Flush())
	got, writes = out.read()
	require.Equal(t, 1, writes, "one write for the whole batch")
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	require.Len(t, lines, 100)
	require.Contains(t, lines[99], `"n":99`)
}

func TestLogBufferWritesWarningsAtOnce(t *testing.T) {
	out := &countingWriter{}
	b := observability.NewLogBuffer(out, time.Hour, 1<<20)
	logger := observability.NewLogger(b, "orders", slog.LevelInfo)
	logger.Info("first")
	logger.Warn("payments unavailable")
	got, writes := out.read()
	require.Equal(t, 1, writes)
	require.Contains(t, got, `"msg":"first"`, "what came before the warning is written with it, in order")
	require.Contains(t, got, `"msg":"payments unavailable"`)
	require.Less(t, strings.Index(got, "first"), strings.Index(got, "payments unavailable"))

	logger.With("step", "reserve").Error("saga failed")
	got, _ = out.read()
	require.Contains(t, got, `"msg":"saga failed"`, "loggers derived with With flush too")
}

func TestLogBufferFlushesWhenFull(t *testing.T) {
	out := &countingWriter{}
	b := observability.NewLogBuffer(out, time.Hour, 256)
	line := strings.Repeat("x", 99) + "\n"
	for range 3 {
		_, _ = b.Write([]byte(line))
	}
	_, writes := out.read()
	require.Equal(t, 1, writes, "the third line crossed 256 bytes")
	got, _ := out.read()
	require.Equal(t, strings.Repeat(line, 3), got)
}

func TestLogBufferFlushesAfterTheDelay(t *testing.T) {
	out := &countingWriter{}
	b := observability.NewLogBuffer(out, 5*time.Millisecond, 1<<20)
	_, _ = b.Write([]byte("line\n"))
	require.Eventually(t, func() bool {
		got, _ := out.read()
		return got == "line\n"
	}, 5*time.Second, time.Millisecond)

	// The timer is armed again by the next line into the empty buffer.
	_, _ = b.Write([]byte("again\n"))
	require.Eventually(t, func() bool {
		got, _ := out.read()
		return got == "line\nagain\n"
	}, 5*time.Second, time.Millisecond)
}

func TestLogBufferCloseFlushesAndPassesLaterLinesThrough(t *testing.T) {
	out := &countingWriter{}
	b := observability.NewLogBuffer(out, time.Hour, 1<<20)
	_, _ = b.Write([]byte("before\n"))
	require.NoError(t, b.Close())
	got, _ := out.read()
	require.Equal(t, "before\n", got)
	_, _ = b.Write([]byte("after\n"))
	got, _ = out.read()
	require.Equal(t, "before\nafter\n", got)
}
