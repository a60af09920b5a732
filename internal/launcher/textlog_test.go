package launcher

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// format formats one line for the process "catalog" (padded to the
// width of "identity"), without colours.
func format(t *testing.T, f textFormat, line string) string {
	t.Helper()
	var fields []logField
	out := string(f.appendLine(nil, []byte("catalog "), []byte(line), &fields))
	require.True(t, strings.HasSuffix(out, "\n"), "%q ends with a newline", out)
	require.Equal(t, 1, strings.Count(out, "\n"), "%q is one line", out)
	return strings.TrimSuffix(out, "\n")
}

// blank is what stands for the time and level columns of a line without them.
var blank = strings.Repeat(" ", len("12:00:01.234 INFO  "))

func TestTextFormatSlogLines(t *testing.T) {
	f := textFormat{}
	for line, want := range map[string]string{
		`{"time":"2026-11-21T12:00:01.234567+01:00","level":"INFO","msg":"product created","service":"catalog","sku":"MUG-1","stock":30}`: "12:00:01.234 INFO  catalog  product created sku=MUG-1 stock=30",
		`{"time":"2026-11-21T23:59:59.9Z","level":"DEBUG","msg":"cache miss","key":"p-1"}`:                                                "23:59:59.900 DEBUG catalog  cache miss key=p-1",
		`{"time":"2026-11-21T08:00:00Z","level":"WARN","msg":"slow query","took_ms":812.5,"ok":false,"next":null}`:                        "08:00:00.000 WARN  catalog  slow query took_ms=812.5 ok=false next=null",
		`{"time":"2026-11-21T08:00:00.123456789-05:00","level":"ERROR","msg":"save failed","err":"disk full"}`:                            `08:00:00.123 ERROR catalog  save failed err="disk full"`,
		`{"time":"2026-11-21T08:00:00.1Z","level":"INFO+2","msg":"between levels"}`:                                                       "08:00:00.100 INFO+2 catalog  between levels",
		// The fake services of these tests log neither time nor level.
		`{"msg":"serving","service":"catalog"}`: blank + "catalog  serving",
		// A timestamp it cannot read stays as an attribute.
		`{"time":"yesterday","level":"INFO","msg":"m"}`: "             INFO  catalog  m time=yesterday",
		`{"time":1732190401,"msg":"m"}`:                 blank + "catalog  m time=1732190401",
		// No message: the attributes follow the name.
		`{"level":"INFO","a":1}`: "             INFO  catalog  a=1",
		`{}`:                     blank + "catalog ",
		// Groups become dotted keys; arrays and empty objects stay JSON.
		`{"msg":"m","db":{"table":"orders","op":{"kind":"insert"},"rows":3},"empty":{},"list":[1,"a b",{"x":"}"}]}`: blank + `catalog  m db.table=orders db.op.kind=insert db.rows=3 empty={} list=[1,"a b",{"x":"}"}]`,
		// Whitespace JSON allows, and escaped keys.
		` { "msg" : "m" , "k\u00e9y" : "v" } `: blank + "catalog  m kéy=v",
		// Windows line ends.
		"{\"msg\":\"m\"}\r": blank + "catalog  m",
	} {
		require.Equal(t, want, format(t, f, line), line)
	}
}

func TestTextFormatQuotesWhatWouldBeMisread(t *testing.T) {
	f := textFormat{}
	got := format(t, f, `{"msg":"m","err":"open \"a b\": denied","multi":"one\ntwo","eq":"k=v","empty":"","tab":"a\tb",`+
		`"esc":"\u001b[31m","plain":"/api/v1/products?page=2&x","path":"/api/v1/products/p-1","unicode":"café-☕","bell":"\u0007"}`)
	require.Equal(t, blank+`catalog  m err="open \"a b\": denied" multi="one\ntwo" eq="k=v" empty="" tab="a\tb" `+
		`esc="\x1b[31m" plain="/api/v1/products?page=2&x" path=/api/v1/products/p-1 unicode=café-☕ bell="\a"`, got)

	// A message may hold spaces, quotes and equals signs as they are, but
	// not what would break the line or reach the terminal as a control.
	require.Equal(t, blank+`catalog  said "hi" a=b`, format(t, f, `{"msg":"said \"hi\" a=b"}`))
	require.Equal(t, blank+`catalog  "two\nlines" k=v`, format(t, f, `{"msg":"two\nlines","k":"v"}`))

	// Keys are quoted by the same rule as values.
	require.Equal(t, blank+`catalog  "a key"=1 "k\n"=2`, format(t, f, `{"a key":1,"k\n":2}`))
}

func TestTextFormatInvalidUTF8(t *testing.T) {
	f := textFormat{}
	// Inside a JSON string, as encoding/json reads it: U+FFFD.
	require.Equal(t, blank+"catalog  bad \ufffd byte v=\ufffd", format(t, f, "{\"msg\":\"bad \xff byte\",\"v\":\"\xfe\"}"))
	// Anywhere else the line is not JSON, so it goes out byte for byte.
	require.Equal(t, blank+"catalog  {\"msg\":\"m\"}\xff", format(t, f, "{\"msg\":\"m\"}\xff"))
	require.Equal(t, blank+"catalog  raw \xff\xfe bytes", format(t, f, "raw \xff\xfe bytes"))
}

func TestTextFormatShowsOtherLinesAsTheyAre(t *testing.T) {
	f := textFormat{color: true}
	for _, line := range []string{
		"panic: runtime error: index out of range [3] with length 3",
		"\tgoroutine 1 [running]:",
		`{"msg":"cut`,
		`{"msg":"m"} trailing`,
		`{"msg":"m"}{"msg":"n"}`,
		`["not","an","object"]`,
		`"just a string"`,
		`42`,
		`{"msg":"raw control ` + "\x01" + `"}`, // invalid JSON: controls must be escaped
	} {
		require.Equal(t, blank+"catalog  "+line, format(t, f, line))
	}
	require.Equal(t, blank+"catalog ", format(t, f, ""), "an empty line stays empty")
}

func TestTextFormatKeepsLongLinesWhole(t *testing.T) {
	long := strings.Repeat("word ", 4000)
	got := format(t, textFormat{}, `{"msg":"m","body":"`+long+`"}`)
	require.Equal(t, blank+`catalog  m body="`+long+`"`, got)
	raw := strings.Repeat("x", 20000)
	require.Equal(t, blank+"catalog  "+raw, format(t, textFormat{}, raw))
}

func TestTextFormatTraceIDs(t *testing.T) {
	const withRequest = `{"msg":"m","request_id":"r-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`
	const background = `{"msg":"event handled","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`
	require.Equal(t, blank+"catalog  m request_id=r-1", format(t, textFormat{}, withRequest),
		"the request id already links the request's lines")
	require.Equal(t, blank+"catalog  event handled trace_id=4bf92f3577b34da6a3ce929d0e0e4736", format(t, textFormat{}, background),
		"without a request id the trace id is the link")
	require.Equal(t, blank+"catalog  m request_id=r-1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
		format(t, textFormat{keepTraceIDs: true}, withRequest), "exported traces can be looked up")
}

func TestTextFormatAccessLines(t *testing.T) {
	f := textFormat{}
	write := func(rec observability.AccessRecord) string {
		var buf bytes.Buffer
		observability.NewAccessLog(&buf, "gateway").Write(&rec)
		line := strings.TrimSuffix(buf.String(), "\n")
		var v struct{ Time string }
		require.NoError(t, json.Unmarshal([]byte(line), &v))
		at, err := time.Parse(time.RFC3339Nano, v.Time)
		require.NoError(t, err)
		got := format(t, f, line)
		clock := at.Format("15:04:05.000") + " "
		require.True(t, strings.HasPrefix(got, clock), "%q starts with the line's time %q", got, clock)
		return strings.TrimPrefix(got, clock)
	}
	ok := observability.AccessRecord{
		Method: "GET", Route: "/api/v1/products/{id}", Path: "/api/v1/products/p-1", Status: 200,
		Duration: 1234567 * time.Nanosecond, Bytes: 452, ClientIP: "127.0.0.1",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", RequestID: "9f86d081884c7d65-1a",
	}
	require.Equal(t, "INFO  catalog  GET /api/v1/products/p-1 200 1.2ms", write(ok))
	ok.UserID = "u-42"
	require.Equal(t, "INFO  catalog  GET /api/v1/products/p-1 200 1.2ms", write(ok))

	failed := ok
	failed.Method, failed.Path, failed.Status, failed.Duration, failed.UserID = "POST", "/api/v1/orders", 503, 2500*time.Millisecond, "u-42"
	require.Equal(t, "INFO  catalog  POST /api/v1/orders 503 2.5s user_id=u-42 request_id=9f86d081884c7d65-1a", write(failed),
		"a failed request keeps its request id")

	odd := observability.AccessRecord{Method: "GET", Route: "unmatched", Path: "/a b\n", Status: 404, Duration: 42 * time.Microsecond}
	require.Equal(t, `INFO  catalog  GET "/a b\n" 404 42µs`, write(odd))

	// The gateway's slog fallback writes the same fields.
	var buf bytes.Buffer
	logger := observability.NewLogger(&buf, "gateway", slog.LevelInfo)
	logger.LogAttrs(observability.WithRequestID(context.Background(), "r-9"), slog.LevelInfo, "request served",
		slog.String("method", "DELETE"), slog.String("route", "/api/v1/cart/items/{sku}"), slog.String("path", "/api/v1/cart/items/MUG-1"),
		slog.Int("status", 204), slog.Float64("duration_ms", 0.85), slog.Int64("bytes", 0), slog.String("client_ip", "127.0.0.1"))
	got := format(t, f, strings.TrimSuffix(buf.String(), "\n"))
	require.Regexp(t, `^\d\d:\d\d:\d\d\.\d{3} INFO  catalog  DELETE /api/v1/cart/items/MUG-1 204 850µs$`, got)

	// A line with that message but not an access line's fields is shown
	// like any other.
	require.Equal(t, blank+"catalog  request served method=GET", format(t, f, `{"msg":"request served","method":"GET"}`))
	require.Equal(t, blank+`catalog  request served method=GET path=/x status=200`,
		format(t, f, `{"msg":"request served","method":"GET","path":"/x","status":"200"}`))
}

func TestAppendDuration(t *testing.T) {
	for ms, want := range map[float64]string{
		0:        "0s",
		0.001:    "1µs",
		0.3:      "300µs",
		0.999:    "999µs",
		1:        "1ms",
		1.234:    "1.2ms",
		9.96:     "10ms",
		35.4:     "35ms",
		999.4:    "999ms",
		1234.567: "1.23s",
		61000:    "1m1s",
	} {
		require.Equal(t, want, string(appendDuration(nil, ms)), "%v ms", ms)
	}
}

func TestTextFormatColours(t *testing.T) {
	f := textFormat{color: true}
	name := "\x1b[35mcatalog \x1b[0m"
	colour := func(line string) string {
		var fields []logField
		return strings.TrimSuffix(string(f.appendLine(nil, []byte(name), []byte(line), &fields)), "\n")
	}
	const ts = `"time":"2026-11-21T12:00:01.234Z"`
	for level, want := range map[string]string{
		"DEBUG":  "\x1b[90mDEBUG\x1b[0m ",
		"INFO":   "\x1b[32mINFO\x1b[0m  ",
		"WARN":   "\x1b[33mWARN\x1b[0m  ",
		"ERROR":  "\x1b[1;31mERROR\x1b[0m ",
		"WARN+1": "\x1b[33mWARN+1\x1b[0m ",
		"TRACE":  "TRACE ",
	} {
		require.Equal(t, "12:00:01.234 "+want+name+" m \x1b[2mk=\x1b[0mv", colour(`{`+ts+`,"level":"`+level+`","msg":"m","k":"v"}`), level)
	}
	require.Equal(t, "12:00:01.234 \x1b[32mINFO\x1b[0m  "+name+" GET /x \x1b[31m500\x1b[0m 1ms \x1b[2mrequest_id=\x1b[0mr-1",
		colour(`{`+ts+`,"level":"INFO","msg":"request served","method":"GET","path":"/x","status":500,"duration_ms":1,"request_id":"r-1"}`))
	require.Equal(t, "12:00:01.234 \x1b[32mINFO\x1b[0m  "+name+" GET /x \x1b[33m404\x1b[0m 1ms",
		colour(`{`+ts+`,"level":"INFO","msg":"request served","method":"GET","path":"/x","status":404,"duration_ms":1}`))
	require.Equal(t, "12:00:01.234 \x1b[32mINFO\x1b[0m  "+name+" \x1b[2mGET /x 200 1ms\x1b[0m",
		colour(`{`+ts+`,"level":"INFO","msg":"request served","method":"GET","path":"/x","status":200,"duration_ms":1}`),
		"a request that succeeded is dimmed")
	require.Equal(t, blank+name+" not json", colour("not json"), "a line shown as is gets no colour of its own")

	// Without colours, not one escape sequence.
	var fields []logField
	plain := (&textFormat{}).appendLine(nil, []byte("catalog "), []byte(`{`+ts+`,"level":"ERROR","msg":"m","k":"v"}`), &fields)
	require.Equal(t, "12:00:01.234 ERROR catalog  m k=v\n", string(plain))
}

func TestTextFormatAllocatesNothingForAPlainLine(t *testing.T) {
	f := textFormat{}
	line := []byte(`{"time":"2026-11-21T12:00:01.234Z","level":"INFO","msg":"product created","service":"catalog","sku":"MUG-1","stock":30,"request_id":"r-1"}`)
	var fields []logField
	out := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		out = f.appendLine(out[:0], []byte("catalog "), line, &fields)
	})
	require.Zero(t, allocs)
}

func TestConfigTextFormat(t *testing.T) {
	cfg := validConfig(t)
	require.Equal(t, LogFormatAuto, cfg.LogFormat)
	require.Nil(t, cfg.textFormat(), "auto: JSON into anything but a terminal")

	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	cfg.Stdout = w
	require.Nil(t, cfg.textFormat(), "auto: JSON into a pipe")

	// The test for a terminal is a character device, which /dev/null is.
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer devNull.Close()
	cfg.Stdout = devNull
	require.Equal(t, &textFormat{}, cfg.textFormat(), "auto: text on a terminal")
	cfg.LogFormat = LogFormatJSON
	require.Nil(t, cfg.textFormat())

	cfg.Stdout = w
	cfg.LogFormat = LogFormatText
	cfg.Color = true
	cfg.Env = []string{"PATH=/bin", "OTEL_EXPORTER_OTLP_ENDPOINT="}
	require.Equal(t, &textFormat{color: true}, cfg.textFormat(), "text wherever asked")
	cfg.Env = append(cfg.Env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4317")
	require.Equal(t, &textFormat{color: true, keepTraceIDs: true}, cfg.textFormat())
}
