package observability

import (
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"time"
)

// AccessLog writes an HTTP server's line per request straight to the
// writer under its Logger, in the shape of the Logger's own records:
//
//	{"time":…,"level":"INFO","msg":"request served","service":…,"method":…,…,"request_id":…}
//
// A gateway writes one for every request, and slog's generic path (a
// caller lookup, a Record, the handler chain, escaping every key) cost
// about 2 µs a line, several times the cost of the appends below, which
// know the fields in advance. Everything else logs through slog. Give it
// the same writer as the Logger (a LogBuffer), so lines interleave whole.
type AccessLog struct {
	w      io.Writer
	prefix string
	bufs   sync.Pool
}

// AccessRecord is one served request. Empty TraceID and UserID are left
// out of the line.
type AccessRecord struct {
	Method    string
	Route     string
	Path      string
	Status    int
	Duration  time.Duration
	Bytes     int64
	ClientIP  string
	TraceID   string
	UserID    string
	RequestID string
}

// NewAccessLog returns an access log writing to w for service.
func NewAccessLog(w io.Writer, service string) *AccessLog {
	prefix := appendJSONString([]byte(`,"level":"INFO","msg":"request served","service":`), service)
	a := &AccessLog{w: w, prefix: string(prefix)}
	a.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	return a
}

// Write writes rec as one line. Like the Logger, it never fails the
// request: a write error is dropped.
func (a *AccessLog) Write(rec *AccessRecord) {
	bp := a.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = time.Now().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = append(b, a.prefix...)
	b = appendField(b, "method", rec.Method)
	b = appendField(b, "route", rec.Route)
	b = appendField(b, "path", rec.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(rec.Status), 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(rec.Duration.Microseconds())/1000, 'f', -1, 64)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, rec.Bytes, 10)
	b = appendField(b, "client_ip", rec.ClientIP)
	if rec.TraceID != "" {
		b = appendField(b, "trace_id", rec.TraceID)
	}
	if rec.UserID != "" {
		b = appendField(b, "user_id", rec.UserID)
	}
	if rec.RequestID != "" {
		b = appendField(b, "request_id", rec.RequestID)
	}
	b = append(b, "}\n"...)
	_, _ = a.w.Write(b)
	*bp = b
	a.bufs.Put(bp)
}

// appendField appends ,"key":"value"; key must need no escaping.
func appendField(b []byte, key, value string) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendJSONString(b, value)
}

// appendJSONString appends s as a JSON string. Printable ASCII other than
// the quote and the backslash is copied as is, which is every route,
// method, address and id, and nearly every path; anything else takes
// encoding/json's escaping (control characters, invalid UTF-8).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			quoted, _ := json.Marshal(s) // a string always marshals
			return append(b, quoted...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
