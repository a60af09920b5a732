package launcher

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// maxLine bounds how much of a line without a newline is buffered; a longer
// one is written in pieces rather than held in memory.
const maxLine = 64 << 10

// palette colours prefixes in turn, one per process.
var palette = []string{"36", "35", "33", "32", "34", "91", "96", "95", "93", "92"}

// logSink puts whole lines from many processes on one writer. A line is
// written with a single Write while holding the lock, so lines from
// different processes never interleave. It is safe for concurrent use.
type logSink struct {
	mu    sync.Mutex
	out   io.Writer
	width int
	color bool
	next  int
}

func newLogSink(out io.Writer, color bool, names []string) *logSink {
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	return &logSink{out: out, width: width, color: color}
}

// prefix returns the padded, possibly coloured "name  | " that starts
// every line of name, taking the next colour of the palette.
func (s *logSink) prefix(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	label := name + strings.Repeat(" ", max(0, s.width-len(name))) + " |"
	if s.color {
		label = "\x1b[" + palette[s.next%len(palette)] + "m" + label + "\x1b[0m"
		s.next++
	}
	return []byte(label + " ")
}

// print writes text as is (the banner), between lines.
func (s *logSink) print(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.out, text)
}

func (s *logSink) line(prefix, line []byte) {
	s.write(appendLine(nil, prefix, line))
}

// write puts buf, whole lines, on the output in one Write.
func (s *logSink) write(buf []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.out.Write(buf)
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

	mu  sync.Mutex
	buf []byte // the partial line waiting for its newline
	out []byte // reused for the prefixed lines of one Write
}

func (s *logSink) writer(name string) *lineWriter {
	return &lineWriter{sink: s, prefix: s.prefix(name)}
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
		out = appendLine(out, w.prefix, w.buf[start:start+i])
		start += i + 1
	}
	for len(w.buf)-start >= maxLine {
		out = appendLine(out, w.prefix, w.buf[start:start+maxLine])
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
		w.sink.line(w.prefix, w.buf)
		w.buf = w.buf[:0]
	}
}
