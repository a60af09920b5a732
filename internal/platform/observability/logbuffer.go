package observability

import (
	"io"
	"sync"
	"time"
)

// LogBuffer batches log lines on their way to w, as nginx's buffered
// access_log and zap's BufferedWriteSyncer do: a busy gateway writes a
// line per request, and one write(2) per line was a tenth of its CPU (and
// as much again in whatever reads the other end of the pipe). Lines are
// held at most delay, or until size bytes are waiting, and a record at
// warning level or above is written at once (NewLogger flushes after it).
// Close writes what is left. A process that dies without calling Close
// loses at most delay's worth of lines; a panic's stack goes to stderr,
// which is not buffered.
//
// Written here rather than taken from zap so that the one logging API
// stays log/slog; it is a mutex, a byte slice and a timer.
type LogBuffer struct {
	w     io.Writer
	delay time.Duration
	size  int

	mu     sync.Mutex
	buf    []byte
	timer  *time.Timer
	closed bool
}

// NewLogBuffer returns a buffer in front of w that holds lines at most
// delay and at most size bytes.
func NewLogBuffer(w io.Writer, delay time.Duration, size int) *LogBuffer {
	b := &LogBuffer{w: w, delay: delay, size: size}
	b.timer = time.AfterFunc(time.Hour, func() { _ = b.Flush() })
	b.timer.Stop()
	return b
}

// Write buffers p, which slog hands over one whole line at a time. It
// never fails: losing a log line must not fail a request.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_, _ = b.w.Write(p)
		return len(p), nil
	}
	if len(b.buf) == 0 {
		b.timer.Reset(b.delay)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= b.size {
		b.flushLocked()
	}
	return len(p), nil
}

// Flush writes the waiting lines now.
func (b *LogBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return nil
}

// Close flushes and makes later writes go straight through.
func (b *LogBuffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.timer.Stop()
	b.closed = true
	return nil
}

func (b *LogBuffer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	_, _ = b.w.Write(b.buf)
	// A burst should not pin a large buffer for the process's life.
	if cap(b.buf) > 4*b.size {
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
}
