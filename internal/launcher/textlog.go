package launcher

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// textFormat turns the JSON log lines of the processes into lines a person
// reads on a terminal, one line for one line:
//
//	12:00:01.234 INFO  catalog  product created sku=MUG-1 request_id=4f1c9a0b2d3e5f67-2a
//	12:00:01.236 INFO  gateway  POST /api/v1/products 201 1.2ms
//	12:00:02.001 WARN  orders   payment retry attempt=2 err="provider unavailable"
//
// That is the time of day of the line's own timestamp (HH:MM:SS.mmm), the
// level, the process's name, the message, then the other attributes as
// key=value in the order they were logged, a value quoted when it holds a
// space, a quote, an equals sign or a character that is not printable (as
// slog's own TextHandler does).
// Groups become dotted keys (db.table=orders). The gateway's access-log
// lines become METHOD path status duration. A line that is not a JSON
// object is shown as it came, after the name, under blank time and level
// columns; nothing is truncated or wrapped.
//
// Left out, because the line already shows them or they add nothing on a
// laptop:
//   - time, level and msg, shown in their columns;
//   - service: the name column says which process wrote the line;
//   - trace_id on a line that has a request_id, unless traces are exported:
//     the request id follows a request through every process too, is
//     shorter, and is what a client sees (X-Request-Id, problem bodies).
//     Lines of background work (an event consumer, say) keep their trace_id,
//     often the only link back to the request that caused them;
//   - on access lines: route (the path says it), bytes, client_ip (loopback
//     for everything on one machine), and for a request that succeeded
//     request_id and user_id too; a failed one keeps them, to find the
//     lines that explain it and whose request it was.
//
// With colours, the level is coloured, the access line of a request that
// succeeded is dimmed (warnings and failures stand out among them), a
// failed request's status is yellow (4xx) or red (5xx), and attribute keys
// are dimmed so their values stand out.
type textFormat struct {
	color bool
	// keepTraceIDs keeps every trace_id, for looking traces up in the
	// backend they are exported to.
	keepTraceIDs bool
}

// ANSI colours of the text format.
const (
	ansiReset   = "\x1b[0m"
	ansiDim     = "\x1b[2m"
	ansiRed     = "\x1b[31m"
	ansiBoldRed = "\x1b[1;31m"
	ansiGreen   = "\x1b[32m"
	ansiYellow  = "\x1b[33m"
	ansiGrey    = "\x1b[90m"
)

// Widths of the time (15:04:05.000) and level columns.
const (
	clockWidth = len("15:04:05.000")
	levelWidth = len("ERROR")
)

// blankHead stands in for the time and level columns of a line that has
// neither, so names stay in one column.
var blankHead = bytes.Repeat([]byte(" "), clockWidth+1+levelWidth+1)

// accessMessage is the message of the gateway's access-log lines
// (observability.AccessLog and the gateway's slog fallback).
const accessMessage = "request served"

// logField is one attribute of a decoded line.
type logField struct {
	key []byte
	// val is a string's text, decoded, or any other value's JSON text.
	val []byte
	str bool
}

// appendLine appends line, formatted, to out: name (the process's padded,
// possibly coloured name) in its column and a newline at the end. fields
// is scratch space the caller keeps from line to line.
func (f *textFormat) appendLine(out, name, line []byte, fields *[]logField) []byte {
	line = bytes.TrimSuffix(line, []byte("\r"))
	fs, ok := decodeLine((*fields)[:0], line)
	*fields = fs
	if !ok {
		out = append(out, blankHead...)
		out = append(out, name...)
		if len(line) > 0 {
			out = append(append(out, ' '), line...)
		}
		return append(out, '\n')
	}

	// Where the columns come from, and what else there is to know.
	timeAt, levelAt, msgAt := -1, -1, -1
	hasRequestID := false
	for i, fd := range fs {
		switch string(fd.key) {
		case "time":
			if timeAt < 0 && fd.str && validClock(fd.val) {
				timeAt = i
			}
		case "level":
			if levelAt < 0 && fd.str {
				levelAt = i
			}
		case "msg":
			if msgAt < 0 && fd.str {
				msgAt = i
			}
		case "request_id":
			hasRequestID = true
		}
	}

	if timeAt >= 0 {
		out = appendClock(out, fs[timeAt].val)
		out = append(out, ' ')
	} else {
		out = append(out, blankHead[:clockWidth+1]...)
	}
	if levelAt >= 0 {
		out = f.appendLevel(out, fs[levelAt].val)
	} else {
		out = append(out, blankHead[:levelWidth+1]...)
	}
	out = append(out, name...)

	access := false
	status := -1
	if msgAt >= 0 {
		msg := fs[msgAt].val
		if string(msg) == accessMessage {
			out, status, access = f.appendAccess(out, fs)
		}
		if !access && len(msg) > 0 {
			out = appendText(append(out, ' '), msg, false)
		}
	}

	for i, fd := range fs {
		if i == timeAt || i == levelAt || i == msgAt {
			continue
		}
		switch string(fd.key) {
		case "service":
			continue
		case "trace_id":
			if hasRequestID && !f.keepTraceIDs {
				continue
			}
		}
		if access {
			switch string(fd.key) {
			case "method", "path", "status", "duration_ms", "route", "bytes", "client_ip":
				continue
			case "request_id", "user_id":
				if status < 400 {
					continue
				}
			}
		}
		out = f.appendAttr(out, fd)
	}
	return append(out, '\n')
}

// appendLevel appends the level, padded to its column and coloured.
func (f *textFormat) appendLevel(out, level []byte) []byte {
	color := ""
	if f.color {
		// slog writes levels between the named ones as "INFO+2", "WARN-1".
		switch {
		case bytes.HasPrefix(level, []byte("ERROR")):
			color = ansiBoldRed
		case bytes.HasPrefix(level, []byte("WARN")):
			color = ansiYellow
		case bytes.HasPrefix(level, []byte("INFO")):
			color = ansiGreen
		case bytes.HasPrefix(level, []byte("DEBUG")):
			color = ansiGrey
		}
	}
	if color != "" {
		out = append(out, color...)
	}
	out = appendText(out, level, true)
	if color != "" {
		out = append(out, ansiReset...)
	}
	for n := utf8.RuneCount(level); n < levelWidth; n++ {
		out = append(out, ' ')
	}
	return append(out, ' ')
}

// appendAccess appends " METHOD path status duration" when fs is an access
// line, and returns its status.
func (f *textFormat) appendAccess(out []byte, fs []logField) ([]byte, int, bool) {
	var method, path, status, duration *logField
	for i := range fs {
		fd := &fs[i]
		switch string(fd.key) {
		case "method":
			method = fd
		case "path":
			path = fd
		case "status":
			status = fd
		case "duration_ms":
			duration = fd
		}
	}
	if method == nil || !method.str || path == nil || !path.str || status == nil || status.str {
		return out, -1, false
	}
	code, ok := parseStatus(status.val)
	if !ok {
		return out, -1, false
	}
	dim := f.color && code < 400
	out = append(out, ' ')
	if dim {
		out = append(out, ansiDim...)
	}
	out = appendText(out, method.val, true)
	out = appendText(append(out, ' '), path.val, true)
	out = append(out, ' ')
	color := ""
	if f.color {
		switch {
		case code >= 500:
			color = ansiRed
		case code >= 400:
			color = ansiYellow
		}
	}
	if color != "" {
		out = append(out, color...)
	}
	out = strconv.AppendInt(out, int64(code), 10)
	if color != "" {
		out = append(out, ansiReset...)
	}
	if duration != nil && !duration.str {
		if ms, err := strconv.ParseFloat(string(duration.val), 64); err == nil {
			out = appendDuration(append(out, ' '), ms)
		}
	}
	if dim {
		out = append(out, ansiReset...)
	}
	return out, code, true
}

// appendAttr appends " key=value", the key dimmed when colours are on so
// the values stand out.
func (f *textFormat) appendAttr(out []byte, fd logField) []byte {
	out = append(out, ' ')
	if f.color {
		out = append(out, ansiDim...)
	}
	out = appendText(out, fd.key, true)
	out = append(out, '=')
	if f.color {
		out = append(out, ansiReset...)
	}
	if fd.str {
		return appendText(out, fd.val, true)
	}
	// A number, true, false, null, an array or an empty object: its JSON
	// text, which holds no newline (the line had none).
	return append(out, fd.val...)
}

// appendText appends s, quoted Go-style when it would be misread or would
// break the line: when it is empty or holds a control or unprintable
// character, and, for a value (bare), a space, a quote or an equals sign.
func appendText(out, s []byte, bare bool) []byte {
	if needsQuote(s, bare) {
		return strconv.AppendQuote(out, string(s))
	}
	return append(out, s...)
}

func needsQuote(s []byte, bare bool) bool {
	if len(s) == 0 {
		return bare
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < ' ' || c == 0x7f || bare && (c == ' ' || c == '"' || c == '=') {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 || !unicode.IsPrint(r) {
			return true
		}
		i += n
	}
	return false
}

// validClock reports whether ts is an RFC 3339 timestamp as far as its
// time of day: 2006-01-02T15:04:05…
func validClock(ts []byte) bool {
	if len(ts) < 19 || ts[4] != '-' || ts[7] != '-' || ts[10] != 'T' && ts[10] != 't' || ts[13] != ':' || ts[16] != ':' {
		return false
	}
	for _, i := range [...]int{11, 12, 14, 15, 17, 18} {
		if ts[i] < '0' || ts[i] > '9' {
			return false
		}
	}
	return true
}

// appendClock appends the time of day of ts (validClock) with
// milliseconds, in the zone the process wrote it in: the processes of
// `mercato up` share the machine's clock and zone.
func appendClock(out, ts []byte) []byte {
	out = append(out, ts[11:19]...)
	out = append(out, '.')
	n := 0
	if len(ts) > 19 && ts[19] == '.' {
		for i := 20; i < len(ts) && n < 3 && ts[i] >= '0' && ts[i] <= '9'; i++ {
			out = append(out, ts[i])
			n++
		}
	}
	for ; n < 3; n++ {
		out = append(out, '0')
	}
	return out
}

// parseStatus parses an HTTP status code.
func parseStatus(b []byte) (int, bool) {
	if len(b) != 3 {
		return 0, false
	}
	code := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, true
}

// appendDuration appends ms as a duration with two or three significant
// digits: 850µs, 1.2ms, 35ms, 1.24s.
func appendDuration(out []byte, ms float64) []byte {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d < time.Millisecond:
		d = d.Round(time.Microsecond)
	case d < 10*time.Millisecond:
		d = d.Round(100 * time.Microsecond)
	case d < time.Second:
		d = d.Round(time.Millisecond)
	default:
		d = d.Round(10 * time.Millisecond)
	}
	return append(out, d.String()...)
}

// decodeLine appends the attributes of line to fields when line is a JSON
// object. encoding/json checks the line (without allocating); the walk
// below then only slices it, decoding only strings that hold escapes or
// invalid UTF-8, so the usual line costs no allocation.
func decodeLine(fields []logField, line []byte) ([]logField, bool) {
	i := skipSpace(line, 0)
	if i == len(line) || line[i] != '{' || !json.Valid(line) {
		return fields, false
	}
	fields, _ = decodeObject(fields, line, i, nil)
	return fields, true
}

// decodeObject appends the members of the object opening at b[i] (valid
// JSON) to fields, their keys prefixed with prefix and a dot, and returns
// the index past the object. A member that is a non-empty object (a slog
// group) is flattened into its members.
func decodeObject(fields []logField, b []byte, i int, prefix []byte) ([]logField, int) {
	i = skipSpace(b, i+1)
	if b[i] == '}' {
		return fields, i + 1
	}
	for {
		end := stringEnd(b, i)
		key := decodeString(b[i:end])
		if prefix != nil {
			key = append(append(append(make([]byte, 0, len(prefix)+1+len(key)), prefix...), '.'), key...)
		}
		i = skipSpace(b, end)
		i = skipSpace(b, i+1) // past ':'
		if b[i] == '{' && b[skipSpace(b, i+1)] != '}' {
			fields, i = decodeObject(fields, b, i, key)
		} else {
			end = valueEnd(b, i)
			fd := logField{key: key, val: b[i:end]}
			if b[i] == '"' {
				fd.val, fd.str = decodeString(b[i:end]), true
			}
			fields = append(fields, fd)
			i = end
		}
		i = skipSpace(b, i)
		if b[i] == '}' {
			return fields, i + 1
		}
		i = skipSpace(b, i+1) // past ','
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index past the string opening at b[i].
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the index past the value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default: // a number, true, false or null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// decodeString returns the text of the JSON string raw (quotes included):
// a slice of raw when it has no escape and is valid UTF-8, else decoded by
// encoding/json, which turns invalid UTF-8 into U+FFFD.
func decodeString(raw []byte) []byte {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return inner
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return inner // not reached: the line is valid JSON
	}
	return []byte(s)
}
