package launcher

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"time"
)

// maxLine bounds how much of a line without a newline is buffered; a longer
// one is written in pieces rather than held in memory.
const maxLine = 64 << 10

// palette colours prefixes in turn, one per process.
var palette = []string{"36", "35", "33", "32", "34", "91", "96", "95", "93", "92"}

// logSink puts whole lines from many processes on one writer. A line is
// written with a single Write while holding the lock, so lines from
// different processes never interleave, and neither do the banner and a
// line. It is safe for concurrent use.
type logSink struct {
	mu    sync.Mutex
	out   io.Writer
	width int
	color bool
	next  int
	// text, when set, rewrites each JSON line for a person to read;
	// without it every line goes out as the process wrote it, after its
	// prefix.
	text *textFormat
	last time.Time // of the last write of lines
}

func newLogSink(out io.Writer, color bool, text *textFormat, names []string) *logSink {
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	return &logSink{out: out, width: width, color: color, text: text}
}

// prefix returns the padded, possibly coloured "name  | " that starts
// every JSON line of name, or the padded name of the text format's name
// column, taking the next colour of the palette.
func (s *logSink) prefix(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	label := name + strings.Repeat(" ", max(0, s.width-len(name)))
	if s.text == nil {
		label += " |"
	}
	if s.color {
		label = "\x1b[" + palette[s.next%len(palette)] + "m" + label + "\x1b[0m"
		s.next++
	}
	if s.text == nil {
		label += " "
	}
	return []byte(label)
}

// print writes text as is (the banner), between lines.
func (s *logSink) print(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.out, text)
}

// write puts buf, whole lines, on the output in one Write.
func (s *logSink) write(buf []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.out.Write(buf)
	s.last = time.Now()
}

// waitQuiet returns once no line has been written for quiet, or after
// limit when the lines keep coming, or when ctx is done.
func (s *logSink) waitQuiet(ctx context.Context, quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		s.mu.Lock()
		idle := time.Since(s.last)
		s.mu.Unlock()
		wait := min(quiet-idle, time.Until(deadline))
		if wait <= 0 {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func appendLine(buf, prefix, line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\r"))
	return append(append(append(buf, prefix...), line...), '\n')
}

// lineWriter is an io.Writer for one stream of one process (a child's
// stdout, say): it buffers a partial line until its newline arrives and
// hands whole lines to the sink with the process's prefix. It is safe for
// concurrent use, though each stream normally has a single writer.
type lineWriter struct {
	sink   *logSink
	prefix []byte

	mu     sync.Mutex
	buf    []byte     // the partial line waiting for its newline
	out    []byte     // reused for the prefixed lines of one Write
	fields []logField // reused by the text format
}

func (s *logSink) writer(name string) *lineWriter {
	return &lineWriter{sink: s, prefix: s.prefix(name)}
}

// sibling returns a writer for another stream of the same process (its
// stderr), with the same prefix.
func (w *lineWriter) sibling() *lineWriter {
	return &lineWriter{sink: w.sink, prefix: w.prefix}
}

// appendLine appends one line: prefixed as it is (JSON), or formatted.
func (w *lineWriter) appendLine(out, line []byte) []byte {
	if w.sink.text == nil {
		return appendLine(out, w.prefix, line)
	}
	return w.sink.text.appendLine(out, w.prefix, line, &w.fields)
}

// Write never fails: losing log lines must not stop a process. The whole
// lines of one Write (a read from the child's pipe, often many lines) go
// to the sink in one Write, still each whole and in order.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	out := w.out[:0]
	start := 0
	for {
		i := bytes.IndexByte(w.buf[start:], '\n')
		if i < 0 {
			break
		}
		out = w.appendLine(out, w.buf[start:start+i])
		start += i + 1
	}
	for len(w.buf)-start >= maxLine {
		out = w.appendLine(out, w.buf[start:start+maxLine])
		start += maxLine
	}
	if len(out) > 0 {
		w.sink.write(out)
	}
	w.out = out[:0]
	if cap(w.out) > 4*maxLine {
		w.out = nil // a burst should not pin a large buffer
	}
	w.buf = w.buf[:copy(w.buf, w.buf[start:])]
	return len(p), nil
}

// Flush writes a final line that had no newline.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.sink.write(w.appendLine(nil, w.buf))
		w.buf = w.buf[:0]
	}
}
