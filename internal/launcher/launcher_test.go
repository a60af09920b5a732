package launcher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func validConfig(t *testing.T) Config {
	return Config{
		DataDir:    t.TempDir(),
		Executable: os.Args[0],
		Stdout:     io.Discard,
	}.WithDefaults()
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, validConfig(t).Validate())

	pg := validConfig(t)
	pg.PostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	require.NoError(t, pg.Validate())

	bad := validConfig(t)
	bad.Addr = "8080"
	bad.PostgresURL = "mysql://localhost/x"
	bad.DBPrefix = "Mercato-"
	bad.AdminEmail = "not an email"
	bad.AdminPassword = "short"
	bad.Executable = filepath.Join(t.TempDir(), "missing")
	bad.Services = []string{"catalog", "catalog", "Bad_Name"}
	bad.LogFormat = "yaml"
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{
		`address "8080" is not host:port`,
		`postgres URL "mysql://localhost/x" must start with postgres://`,
		`database prefix "Mercato-"`,
		`admin email "not an email"`,
		"admin password must be 8 to 128 characters",
		"mercato executable",
		`service "catalog" is listed twice`,
		`service name "Bad_Name"`,
		"services must include identity",
		"services must include gateway",
		`log format "yaml" must be text, json or auto`,
	} {
		require.ErrorContains(t, err, want)
	}
}

func TestWithDefaults(t *testing.T) {
	cfg := Config{}.WithDefaults()
	require.Equal(t, DefaultAddr, cfg.Addr)
	require.True(t, filepath.IsAbs(cfg.DataDir), "data dir %q should be absolute", cfg.DataDir)
	require.Equal(t, DefaultServices, cfg.Services)
	require.Equal(t, DefaultAdminEmail, cfg.AdminEmail)
	require.Equal(t, DefaultDBPrefix, cfg.DBPrefix)
	require.Equal(t, LogFormatAuto, cfg.LogFormat)
	require.NotEmpty(t, cfg.Executable)
}

func TestAllocateAddrs(t *testing.T) {
	requested := freeAddr(t)
	public, addrs, err := allocateAddrs(t.Context(), requested, DefaultServices)
	require.NoError(t, err)
	require.Equal(t, requested, public)
	require.Len(t, addrs, len(DefaultServices))

	seen := map[string]bool{public: true}
	for _, name := range DefaultServices {
		for _, a := range []string{addrs[name].GRPC, addrs[name].HTTP} {
			require.False(t, seen[a], "address %s handed out twice", a)
			seen[a] = true
			host, _, err := net.SplitHostPort(a)
			require.NoError(t, err)
			require.Equal(t, loopback, host)
		}
	}
	// Every address is free again for the child that will bind it.
	for a := range seen {
		l, err := net.Listen("tcp", a)
		require.NoError(t, err, "address %s should be free", a)
		require.NoError(t, l.Close())
	}
}

func TestAllocateAddrsPicksAPublicPort(t *testing.T) {
	public, addrs, err := allocateAddrs(t.Context(), "127.0.0.1:0", DefaultServices)
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(public)
	require.NoError(t, err)
	require.Equal(t, loopback, host)
	require.NotEqual(t, "0", port)
	for _, a := range addrs {
		require.NotEqual(t, public, a.GRPC)
		require.NotEqual(t, public, a.HTTP)
	}
}

func TestGatewayURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		":8080":          "http://127.0.0.1:8080",
		"0.0.0.0:8080":   "http://127.0.0.1:8080",
		"[::]:8080":      "http://127.0.0.1:8080",
		"[::1]:8080":     "http://[::1]:8080",
		"localhost:9000": "http://localhost:9000",
	} {
		require.Equal(t, want, Addrs{Gateway: addr}.GatewayURL(), addr)
	}
}

func TestAllocateAddrsPublicInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()

	_, _, err = allocateAddrs(t.Context(), l.Addr().String(), DefaultServices)
	require.EqualError(t, err, "address "+l.Addr().String()+" is in use; pass --addr")
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func testPlan(cfg Config) plan {
	addrs := map[string]ServiceAddrs{
		"identity":  {GRPC: "127.0.0.1:7001", HTTP: "127.0.0.1:7002"},
		"catalog":   {GRPC: "127.0.0.1:7003", HTTP: "127.0.0.1:7004"},
		"gateway":   {GRPC: "127.0.0.1:7005", HTTP: "127.0.0.1:7006"},
		"inventory": {GRPC: "127.0.0.1:7007", HTTP: "127.0.0.1:7008"},
		"cart":      {GRPC: "127.0.0.1:7009", HTTP: "127.0.0.1:7010"},
	}
	lists := map[string][]ServiceAddrs{}
	for name, a := range addrs {
		lists[name] = []ServiceAddrs{a}
	}
	return newPlan(cfg, "nats://127.0.0.1:4333", lists, "s3cret-admin-pw")
}

func TestChildEnvSQLite(t *testing.T) {
	cfg := validConfig(t)
	cfg.Addr = "127.0.0.1:9999"
	cfg.Env = []string{"PATH=/usr/bin", "LOG_LEVEL=debug", "MERCATO_GRPC_ADDR=:1", "DATABASE_URL=postgres://elsewhere/x",
		"MERCATO_ADMIN_PASSWORD=from-shell"}
	p := testPlan(cfg)

	identity, err := p.childEnv("identity")
	require.NoError(t, err)
	env := envMap(identity)
	require.Equal(t, "/usr/bin", env["PATH"], "inherited variables are kept")
	require.Equal(t, "debug", env["LOG_LEVEL"])
	require.Equal(t, "127.0.0.1:7001", env["MERCATO_GRPC_ADDR"], "launcher's value replaces the inherited one")
	require.Equal(t, "127.0.0.1:7002", env["MERCATO_HTTP_ADDR"])
	require.Equal(t, filepath.Join(cfg.DataDir, "identity.db"), env["DATABASE_URL"])
	require.Equal(t, "nats://127.0.0.1:4333", env["NATS_URL"])
	require.Equal(t, "http://127.0.0.1:7002/.well-known/jwks.json", env["JWKS_URL"])
	require.Equal(t, DefaultAdminEmail, env["MERCATO_ADMIN_EMAIL"])
	require.Equal(t, "s3cret-admin-pw", env["MERCATO_ADMIN_PASSWORD"])
	require.NotContains(t, env, "MERCATO_CATALOG_ADDR", "identity calls no other service")
	require.NotContains(t, env, "MERCATO_IDENTITY_ADDR", "nor itself")
	require.NotContains(t, env, "MERCATO_GATEWAY_ADDR")
	require.GreaterOrEqual(t, len(env["MERCATO_SERVICE_SECRET"]), 16)
	require.GreaterOrEqual(t, len(env["MERCATO_PAGE_TOKEN_KEY"]), 16)
	require.Len(t, identity, len(env), "no variable appears twice")
	identitySecret, identityPageKey := env["MERCATO_SERVICE_SECRET"], env["MERCATO_PAGE_TOKEN_KEY"]

	catalog, err := p.childEnv("catalog")
	require.NoError(t, err)
	env = envMap(catalog)
	require.Equal(t, filepath.Join(cfg.DataDir, "catalog.db"), env["DATABASE_URL"])
	require.Equal(t, "http://127.0.0.1:7002/.well-known/jwks.json", env["JWKS_URL"])
	require.NotContains(t, env, "MERCATO_ADMIN_PASSWORD", "only identity learns the admin password")
	require.NotContains(t, env, "MERCATO_ADMIN_EMAIL")
	require.NotContains(t, env, "MERCATO_IDENTITY_ADDR", "the catalog reads identity's keys over HTTP, it makes no gRPC call")
	require.Equal(t, identitySecret, env["MERCATO_SERVICE_SECRET"], "one service secret for all")

	cart, err := p.childEnv("cart")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7003", envMap(cart)["MERCATO_CATALOG_ADDR"], "a service learns where the services it calls are")
	require.NotEqual(t, identityPageKey, env["MERCATO_PAGE_TOKEN_KEY"], "page token keys differ per service")

	gateway, err := p.childEnv("gateway")
	require.NoError(t, err)
	env = envMap(gateway)
	require.Equal(t, "127.0.0.1:9999", env["MERCATO_ADDR"])
	require.Equal(t, "127.0.0.1:7006", env["MERCATO_HTTP_ADDR"])
	require.Equal(t, "127.0.0.1:7001", env["MERCATO_IDENTITY_ADDR"])
	require.Equal(t, "127.0.0.1:7003", env["MERCATO_CATALOG_ADDR"])
	require.NotContains(t, env, "MERCATO_GATEWAY_ADDR")
	require.NotContains(t, env, "DATABASE_URL", "the gateway owns no data")
	require.NotContains(t, env, "MERCATO_ADMIN_PASSWORD")
}

func TestChildEnvPostgres(t *testing.T) {
	cfg := validConfig(t)
	cfg.PostgresURL = "postgres://postgres:pw@db.local:5432/postgres?sslmode=disable"
	cfg.DBPrefix = "run42_"
	p := testPlan(cfg)

	for _, svc := range []string{"identity", "catalog", "inventory"} {
		env, err := p.childEnv(svc)
		require.NoError(t, err)
		require.Equal(t, "postgres://postgres:pw@db.local:5432/run42_"+svc+"?sslmode=disable", envMap(env)["DATABASE_URL"])
	}
	env, err := p.childEnv("gateway")
	require.NoError(t, err)
	require.NotContains(t, envMap(env), "DATABASE_URL")
}

func TestChildEnvNewServiceIsWiredIntoTheGateway(t *testing.T) {
	cfg := validConfig(t)
	cfg.Services = []string{"identity", "catalog", "inventory", "gateway"}
	p := testPlan(cfg)

	env, err := p.childEnv("gateway")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7007", envMap(env)["MERCATO_INVENTORY_ADDR"])
	env, err = p.childEnv("inventory")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(cfg.DataDir, "inventory.db"), envMap(env)["DATABASE_URL"])
}

// writeRecorder records every Write call separately.
type writeRecorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *writeRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func TestLineWriterNeverInterleavesLines(t *testing.T) {
	rec := &writeRecorder{}
	names := []string{"identity", "catalog", "gateway"}
	sink := newLogSink(rec, false, nil, names)

	const linesPerWriter = 200
	var wg sync.WaitGroup
	for _, name := range names {
		w := sink.writer(name)
		wg.Go(func() {
			// Lines arrive cut at awkward places: several per write, or one
			// across several writes.
			var all bytes.Buffer
			for i := range linesPerWriter {
				fmt.Fprintf(&all, `{"service":%q,"seq":%d,"pad":%q}`+"\n", name, i, strings.Repeat("x", i%37))
			}
			b := all.Bytes()
			for len(b) > 0 {
				n := min(len(b), 1+len(b)%23)
				_, _ = w.Write(b[:n])
				b = b[n:]
			}
		})
	}
	wg.Wait()

	next := map[string]int{}
	var lines []string
	for _, w := range rec.writes {
		require.True(t, strings.HasSuffix(w, "\n"), "write %q ends mid-line", w)
		for l := range strings.Lines(w) {
			lines = append(lines, l)
		}
	}
	require.Len(t, lines, linesPerWriter*len(names))
	for _, got := range lines {
		prefix, body, ok := strings.Cut(got, " | ")
		require.True(t, ok, "write %q has no prefix", got)
		name := strings.TrimSpace(prefix)
		require.Len(t, prefix, len("identity"), "prefixes are padded to one width")
		require.True(t, strings.HasSuffix(body, "\n"))
		var line struct {
			Service string
			Seq     int
		}
		require.NoError(t, json.Unmarshal([]byte(body), &line), "write %q is not one whole line", got)
		require.Equal(t, name, line.Service)
		require.Equal(t, next[name], line.Seq, "lines of %s out of order", name)
		next[name]++
	}
}

func TestLineWriterWritesAChunkOfLinesAtOnce(t *testing.T) {
	rec := &writeRecorder{}
	sink := newLogSink(rec, false, nil, []string{"gateway"})
	w := sink.writer("gateway")
	_, _ = w.Write([]byte("one\ntwo\nthree\nfour, cut"))
	_, _ = w.Write([]byte(" here\n"))
	require.Equal(t, []string{"gateway | one\ngateway | two\ngateway | three\n", "gateway | four, cut here\n"}, rec.writes)
}

func TestLineWriterFlushAndLongLines(t *testing.T) {
	rec := &writeRecorder{}
	sink := newLogSink(rec, false, nil, []string{"catalog"})
	w := sink.writer("catalog")

	_, _ = w.Write([]byte("windows line\r\nno newline yet"))
	require.Equal(t, []string{"catalog | windows line\n"}, rec.writes)
	w.Flush()
	require.Equal(t, "catalog | no newline yet\n", rec.writes[1])

	long := strings.Repeat("a", maxLine+10)
	_, _ = w.Write([]byte(long))
	require.Len(t, rec.writes, 3, "a line longer than the limit is written in pieces")
	require.Equal(t, "catalog | "+long[:maxLine]+"\n", rec.writes[2])
	w.Flush()
	require.Equal(t, "catalog | "+long[maxLine:]+"\n", rec.writes[3])
}

func TestLineWriterColours(t *testing.T) {
	var out bytes.Buffer
	sink := newLogSink(&out, true, nil, []string{"identity", "catalog"})
	a, b := sink.writer("identity"), sink.writer("catalog")
	_, _ = a.Write([]byte("one\n"))
	_, _ = b.Write([]byte("two\n"))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Equal(t, "\x1b[36midentity |\x1b[0m one", lines[0])
	require.Equal(t, "\x1b[35mcatalog  |\x1b[0m two", lines[1])
}

func TestLineWriterTextFormat(t *testing.T) {
	rec := &writeRecorder{}
	sink := newLogSink(rec, false, &textFormat{}, []string{"mercato", "identity", "catalog"})
	w := sink.writer("catalog")
	_, _ = w.Write([]byte(`{"time":"2026-11-21T12:00:01.234Z","level":"INFO","msg":"one"}` + "\n" + `{"msg":"two",`))
	_, _ = w.Write([]byte(`"k":"v"}` + "\nnot json\n" + `{"msg":"no newline"}`))
	w.sibling().Flush() // another stream's buffer: nothing to flush
	w.Flush()
	require.Equal(t, []string{
		"12:00:01.234 INFO  catalog  one\n",
		blank + "catalog  two k=v\n" + blank + "catalog  not json\n",
		blank + "catalog  no newline\n",
	}, rec.writes)

	coloured := newLogSink(rec, true, &textFormat{color: true}, []string{"identity", "catalog"})
	rec.writes = nil
	_, _ = coloured.writer("identity").Write([]byte("{\"msg\":\"m\"}\n"))
	_, _ = coloured.writer("catalog").Write([]byte("{\"msg\":\"m\"}\n"))
	require.Equal(t, []string{blank + "\x1b[36midentity\x1b[0m m\n", blank + "\x1b[35mcatalog \x1b[0m m\n"}, rec.writes,
		"names keep the palette, without the bar")
}

// The banner is one Write under the sink's lock, so lines written at the
// same time come before or after it, never inside.
func TestBannerIsNeverBrokenByLines(t *testing.T) {
	for _, text := range []*textFormat{nil, {}} {
		rec := &writeRecorder{}
		names := []string{"identity", "catalog", "gateway"}
		sink := newLogSink(rec, false, text, names)
		const banner = "\n  mercato is up (ready in 1s)\n\n    API       http://127.0.0.1:8080\n\n  Ctrl-C to stop.\n\n"
		var wg sync.WaitGroup
		for _, name := range names {
			w := sink.writer(name)
			wg.Go(func() {
				for i := range 300 {
					_, _ = fmt.Fprintf(w, `{"msg":"request served","seq":%d}`+"\n", i)
				}
			})
		}
		wg.Go(func() { sink.print(banner) })
		wg.Wait()

		require.Contains(t, rec.writes, banner, "the banner is written in one piece")
		var all strings.Builder
		for _, w := range rec.writes {
			all.WriteString(w)
		}
		require.Contains(t, all.String(), banner)
		require.Equal(t, 300*len(names), strings.Count(all.String(), `"seq":`)+strings.Count(all.String(), " seq="))
	}
}

func TestLogSinkWaitQuiet(t *testing.T) {
	sink := newLogSink(io.Discard, false, &textFormat{}, []string{"gateway"})
	began := time.Now()
	sink.waitQuiet(t.Context(), time.Hour, time.Hour)
	require.Less(t, time.Since(began), time.Minute, "nothing written yet: quiet already")

	w := sink.writer("gateway")
	_, _ = w.Write([]byte("line\n"))
	written := time.Now()
	sink.waitQuiet(t.Context(), 50*time.Millisecond, time.Hour)
	require.GreaterOrEqual(t, time.Since(written), 50*time.Millisecond, "returns only after the quiet period")
	require.Less(t, time.Since(written), time.Minute)

	_, _ = w.Write([]byte("line\n"))
	began = time.Now()
	sink.waitQuiet(t.Context(), time.Hour, 50*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(began), 50*time.Millisecond, "output that never pauses: waits the limit")
	require.Less(t, time.Since(began), time.Minute)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	began = time.Now()
	sink.waitQuiet(ctx, time.Hour, time.Hour)
	require.Less(t, time.Since(began), time.Minute, "returns when the launcher stops")
}

func TestResolveAdminPassword(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, adminPasswordFile)

	first, err := resolveAdminPassword(dir, "")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(first), 20)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	second, err := resolveAdminPassword(dir, "")
	require.NoError(t, err)
	require.Equal(t, first, second, "a second run uses the saved password")

	other, err := resolveAdminPassword(t.TempDir(), "")
	require.NoError(t, err)
	require.NotEqual(t, first, other, "passwords are random")

	configured, err := resolveAdminPassword(dir, "given-password")
	require.NoError(t, err)
	require.Equal(t, "given-password", configured)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, first+"\n", string(b), "a configured password is not saved")

	require.NoError(t, os.WriteFile(path, []byte("\n"), 0o600))
	replaced, err := resolveAdminPassword(dir, "")
	require.NoError(t, err)
	require.NotEqual(t, first, replaced)
	require.GreaterOrEqual(t, len(replaced), 20, "an empty file is replaced by a fresh password")
}

func TestSeedCatalogIsRealistic(t *testing.T) {
	require.GreaterOrEqual(t, len(demoCatalog), 20)
	skus := map[string]bool{}
	categories := map[string]int{}
	for _, p := range demoCatalog {
		require.False(t, skus[p.SKU], "sku %s twice", p.SKU)
		skus[p.SKU] = true
		require.NotEmpty(t, p.Name)
		require.NotEmpty(t, p.Description)
		require.Positive(t, p.PriceCents)
		require.Equal(t, "USD", p.Currency)
		require.NotEmpty(t, p.Categories)
		require.True(t, strings.HasPrefix(p.ImageURL, "https://"))
		for _, c := range p.Categories {
			categories[c]++
		}
	}
	require.GreaterOrEqual(t, len(categories), 4)
}

// syncBuffer is a bytes.Buffer safe to read while the launcher writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

const fakeAdminPassword = "fake-admin-password"

// fakeConfig runs the fake services (this test binary) with data in dir.
func fakeConfig(t *testing.T, dir string, out io.Writer, modes map[string]string) Config {
	env := append(os.Environ(),
		"FAKE_MERCATO=1",
		// Under -race a process otherwise lingers a second on exit.
		"GORACE=atexit_sleep_ms=0",
		"FAKE_STORE="+filepath.Join(dir, "fake-products.json"),
		"FAKE_ADMIN_PASSWORD="+fakeAdminPassword)
	for svc, mode := range modes {
		env = append(env, "FAKE_MODE_"+strings.ToUpper(svc)+"="+mode)
	}
	return Config{
		Services:      []string{Identity, "catalog", Gateway},
		Addr:          "127.0.0.1:0",
		DataDir:       dir,
		AdminPassword: fakeAdminPassword,
		Executable:    os.Args[0],
		Stdout:        out,
		Env:           env,
		ReadyTimeout:  20 * time.Second,
		StopTimeout:   5 * time.Second,
	}
}

type running struct {
	l    *Launcher
	out  *syncBuffer
	done chan error
	stop context.CancelFunc
}

// launch runs a launcher in the background; the test ends by stopping it.
func launch(t *testing.T, cfg Config) *running {
	t.Helper()
	l, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{l: l, out: cfg.Stdout.(*syncBuffer), done: make(chan error, 1), stop: cancel}
	go func() { r.done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Logf("launcher: %v", err)
		}
	})
	return r
}

func (r *running) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-r.l.Ready():
	case err := <-r.done:
		r.done <- err
		t.Fatalf("launcher stopped before ready: %v\n%s", err, r.out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("launcher not ready in time\n%s", r.out.String())
	}
}

func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("launcher did not return\n%s", r.out.String())
		return nil
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func requireGone(t *testing.T, pids map[string]int) {
	t.Helper()
	require.NotEmpty(t, pids)
	for name, pid := range pids {
		require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "%s (pid %d) is still running", name, pid)
	}
}

func TestRunStartsSeedsAndStops(t *testing.T) {
	dir := t.TempDir()
	r := launch(t, fakeConfig(t, dir, &syncBuffer{}, nil))
	r.waitReady(t)

	info := r.l.Info()
	// Asked for port 0, the gateway got a free one.
	require.NotEqual(t, r.l.Config().Addr, info.Gateway)
	require.NotContains(t, info.Gateway, ":0")
	require.Equal(t, fakeAdminPassword, info.AdminPassword)
	require.Positive(t, info.ReadyIn)
	require.Len(t, info.PIDs, 3)

	// Each process got its own environment.
	admin := func(svc, key string) string {
		code, body := get(t, "http://"+info.Services[svc].HTTP+"/env/"+key)
		if code != http.StatusOK {
			return "<unset>"
		}
		return body
	}
	require.Equal(t, filepath.Join(dir, "catalog.db"), admin("catalog", "DATABASE_URL"))
	require.Equal(t, info.NATS, admin("catalog", "NATS_URL"))
	require.Equal(t, fakeAdminPassword, admin("identity", "MERCATO_ADMIN_PASSWORD"))
	require.Equal(t, "<unset>", admin("catalog", "MERCATO_ADMIN_PASSWORD"))
	require.Equal(t, info.Services["catalog"].GRPC, admin("gateway", "MERCATO_CATALOG_ADDR"))
	require.Equal(t, info.Gateway, admin("gateway", "MERCATO_ADDR"))

	// The demo catalog went through the public API.
	var seeded []demoProduct
	b, err := os.ReadFile(filepath.Join(dir, "fake-products.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &seeded))
	require.Equal(t, demoCatalog, seeded)
	require.Equal(t, demoStockLevels(), readFakeStock(t, dir), "every demo product is stocked")

	out := r.out.String()
	require.Contains(t, out, "mercato is up (ready in ")
	require.Contains(t, out, "    API       http://"+info.Gateway+"\n")
	require.Contains(t, out, "    Docs      http://"+info.Gateway+"/docs\n")
	require.Contains(t, out, "    OpenAPI   http://"+info.Gateway+"/openapi.json\n")
	require.Contains(t, out, "    Password  "+fakeAdminPassword+"\n")
	require.Contains(t, out, "    Data      "+dir+" (SQLite)\n")
	require.Contains(t, out, "Ctrl-C to stop.")
	require.Contains(t, out, `catalog  | {"msg":"serving","service":"catalog"}`+"\n", "a line written in two parts arrives whole")
	require.Contains(t, out, `"msg":"demo catalog seeded"`)

	r.stop()
	require.NoError(t, r.wait(t))
	requireGone(t, info.PIDs)

	out = r.out.String()
	gatewayStop := strings.Index(out, `gateway  | {"msg":"stopping","upstreams_up_while_draining":true}`)
	require.Positive(t, gatewayStop, out)
	for _, svc := range []string{"identity", "catalog"} {
		i := strings.Index(out, svc+strings.Repeat(" ", 8-len(svc))+` | {"msg":"stopping"}`)
		require.Greater(t, i, gatewayStop, "%s must stop after the gateway:\n%s", svc, out)
	}
}

// In text mode every line is readable: no JSON left, the launcher's own
// lines included; in JSON mode every line is the prefix and the line as
// the process wrote it. The banner comes out whole in both.
func TestRunLogFormats(t *testing.T) {
	name := `(mercato |identity|catalog |gateway )`
	for format, lineRE := range map[string]*regexp.Regexp{
		LogFormatJSON: regexp.MustCompile(`^` + name + ` \| (\{.*\})$`),
		LogFormatText: regexp.MustCompile(`^(\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO |WARN |ERROR) | {19})` + name + ` [^ {]`),
	} {
		t.Run(format, func(t *testing.T) {
			cfg := fakeConfig(t, t.TempDir(), &syncBuffer{}, nil)
			cfg.LogFormat = format
			r := launch(t, cfg)
			r.waitReady(t)
			banner := r.l.banner()
			r.stop()
			require.NoError(t, r.wait(t))

			out := r.out.String()
			require.Equal(t, 1, strings.Count(out, banner), "the banner, whole, once:\n%s", out)
			before, after, _ := strings.Cut(out, banner)
			lines := strings.Split(strings.TrimSuffix(before+after, "\n"), "\n")
			require.Greater(t, len(lines), 10)
			for _, line := range lines {
				m := lineRE.FindStringSubmatch(line)
				require.NotNil(t, m, "%s line %q", format, line)
				if format == LogFormatJSON {
					require.True(t, json.Valid([]byte(m[2])), "line %q", line)
				}
			}
			switch format {
			case LogFormatJSON:
				require.Contains(t, lines, `catalog  | {"msg":"serving","service":"catalog"}`)
				require.Contains(t, lines, `gateway  | {"msg":"stopping","upstreams_up_while_draining":true}`)
				require.Contains(t, out, `"level":"INFO","msg":"service ready","service":"launcher","name":"catalog"}`+"\n")
			case LogFormatText:
				require.NotContains(t, out, `{"`)
				require.Contains(t, lines, strings.Repeat(" ", 19)+"catalog  serving")
				require.Contains(t, lines, strings.Repeat(" ", 19)+"gateway  stopping upstreams_up_while_draining=true")
				require.Regexp(t, `(?m)^\d\d:\d\d:\d\d\.\d{3} INFO  mercato  service ready name=catalog$`, out)
				require.Regexp(t, `(?m)^\d\d:\d\d:\d\d\.\d{3} INFO  mercato  service stopped name=gateway status="exit status 0" took=\d+ms$`, out)
			}
		})
	}
}

// demoStockLevels is the stock seeding gives the demo products.
func demoStockLevels() map[string]int32 {
	want := map[string]int32{}
	for _, p := range demoCatalog {
		want[p.SKU] = demoStock
	}
	return want
}

// readFakeStock is the stock the fake gateway was given in dir.
func readFakeStock(t *testing.T, dir string) map[string]int32 {
	t.Helper()
	b, err := os.ReadFile(fakeStockPath(filepath.Join(dir, "fake-products.json")))
	require.NoError(t, err)
	var stock map[string]int32
	require.NoError(t, json.Unmarshal(b, &stock))
	return stock
}

func TestRunSecondRunSeedsNothing(t *testing.T) {
	dir := t.TempDir()
	// Stock as it stands after the first run, once a few units were sold.
	sold := demoStockLevels()
	sold[demoCatalog[0].SKU] = 7
	for run := range 2 {
		cfg := fakeConfig(t, dir, &syncBuffer{}, nil)
		cfg.AdminPassword = ""
		cfg.Env = append(cfg.Env, "FAKE_ADMIN_PASSWORD=")
		r := launch(t, cfg)
		r.waitReady(t)
		out := r.out.String()
		if run == 0 {
			require.Contains(t, out, `"msg":"demo catalog seeded"`)
			require.Equal(t, demoStockLevels(), readFakeStock(t, dir))
			b, err := json.Marshal(sold)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(fakeStockPath(filepath.Join(dir, "fake-products.json")), b, 0o600))
		} else {
			require.NotContains(t, out, `"msg":"demo catalog seeded"`)
		}
		b, err := os.ReadFile(filepath.Join(dir, adminPasswordFile))
		require.NoError(t, err)
		require.Contains(t, out, "    Password  "+strings.TrimSpace(string(b))+"\n", "the saved password is the one printed")
		r.stop()
		require.NoError(t, r.wait(t))
	}
	var seeded []demoProduct
	b, err := os.ReadFile(filepath.Join(dir, "fake-products.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &seeded))
	require.Len(t, seeded, len(demoCatalog))
	require.Equal(t, sold, readFakeStock(t, dir), "the second run leaves stock as it was")
}

func TestRunReportsAServiceThatFailsToStart(t *testing.T) {
	r := launch(t, fakeConfig(t, t.TempDir(), &syncBuffer{}, map[string]string{"catalog": modeExitAtStart}))
	err := r.wait(t)
	require.EqualError(t, err, "catalog exited during start-up (exit status 3, exit code 3); its log above says why")
	out := r.out.String()
	require.Contains(t, out, `catalog  | {"level":"ERROR","msg":"cannot start"}`)
	require.NotContains(t, out, "mercato is up")
	select {
	case <-r.l.Ready():
		t.Fatal("Ready closed although start-up failed")
	default:
	}
	requireGone(t, r.l.Info().PIDs)
}

// targetsOf reads targets.json in dir: the admin address of each instance.
func targetsOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, targetsFile))
	require.NoError(t, err)
	var targets []fileSDTarget
	require.NoError(t, json.Unmarshal(b, &targets))
	out := map[string]string{}
	for _, tg := range targets {
		require.Len(t, tg.Targets, 1)
		require.True(t, strings.HasPrefix(tg.Labels["instance"], tg.Labels["service"]+"-"), "instance %q of %q", tg.Labels["instance"], tg.Labels["service"])
		out[tg.Labels["instance"]] = tg.Targets[0]
	}
	return out
}

// A service that dies is started again on the same ports, logged and
// counted, and targets.json follows it; the rest run on undisturbed.
func TestRunRestartsAServiceThatDies(t *testing.T) {
	dir := t.TempDir()
	r := launch(t, fakeConfig(t, dir, &syncBuffer{}, nil))
	r.waitReady(t)
	info := r.l.Info()
	require.Equal(t, map[string]string{
		"identity-1": info.Services["identity"].HTTP, "catalog-1": info.Services["catalog"].HTTP, "gateway-1": info.Services["gateway"].HTTP,
	}, targetsOf(t, dir))

	resp, err := http.Post("http://"+info.Services["catalog"].HTTP+"/exit", "text/plain", nil)
	if err == nil {
		resp.Body.Close()
	}
	require.Eventually(t, func() bool { return r.l.Restarts("catalog") == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		code, _ := getMaybe("http://" + info.Services["catalog"].HTTP + "/readyz")
		return code == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond, "the new process serves on the same port")
	require.Contains(t, targetsOf(t, dir), "catalog-1")
	require.NoError(t, syscall.Kill(info.PIDs["identity"], 0), "identity kept running")
	out := r.out.String()
	require.Contains(t, out, `"msg":"service exited unexpectedly; restarting","service":"launcher","name":"catalog","status":"exit status 4","restart_in":"100ms"`)
	require.Contains(t, out, `"msg":"service restarted","service":"launcher","name":"catalog"`)

	r.stop()
	require.NoError(t, r.wait(t))
	require.Empty(t, targetsOf(t, dir), "nothing runs any more")
	requireGone(t, info.PIDs)
}

// A service that keeps dying is given up on with a clear message, while
// the others keep running until the launcher is stopped.
func TestRunGivesUpOnACrashLoop(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "catalog-crashes")
	cfg := fakeConfig(t, dir, &syncBuffer{}, nil)
	cfg.Env = append(cfg.Env, "FAKE_CRASH_MARKER="+marker)
	r := launch(t, cfg)
	r.waitReady(t)
	info := r.l.Info()

	require.NoError(t, os.WriteFile(marker, nil, 0o600))
	resp, err := http.Post("http://"+info.Services["catalog"].HTTP+"/exit", "text/plain", nil)
	if err == nil {
		resp.Body.Close()
	}
	require.Eventually(t, func() bool {
		return strings.Contains(r.out.String(), `"msg":"service keeps exiting: given up on, the rest keep running","service":"launcher","name":"catalog"`)
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, crashLoopExits-1, r.l.Restarts("catalog"), "restarted after each exit but the last")
	require.NotContains(t, targetsOf(t, dir), "catalog-1")
	require.NoError(t, syscall.Kill(info.PIDs["identity"], 0), "identity keeps running")
	select {
	case err := <-r.done:
		t.Fatalf("the launcher stopped: %v", err)
	default:
	}

	r.stop()
	require.NoError(t, r.wait(t))
	requireGone(t, info.PIDs)
}

// getMaybe GETs url and returns the status, or 0 when nothing answers.
func getMaybe(url string) (int, error) {
	resp, err := http.Get(url) //nolint:noctx // a probe in a test
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func TestRunKillsAServiceThatIgnoresSIGTERM(t *testing.T) {
	cfg := fakeConfig(t, t.TempDir(), &syncBuffer{}, map[string]string{"identity": modeIgnoreTerm})
	cfg.StopTimeout = 300 * time.Millisecond
	r := launch(t, cfg)
	r.waitReady(t)
	info := r.l.Info()

	r.stop()
	require.NoError(t, r.wait(t))
	out := r.out.String()
	require.Contains(t, out, `"msg":"service killed after stop timeout","service":"launcher","name":"identity","status":"signal: killed"`)
	require.Contains(t, out, `"msg":"service stopped","service":"launcher","name":"catalog","status":"exit status 0"`)
	requireGone(t, info.PIDs)
}

func TestRunRefusesAnAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	cfg := fakeConfig(t, t.TempDir(), &syncBuffer{}, nil)
	cfg.Addr = l.Addr().String()
	r := launch(t, cfg)
	require.EqualError(t, r.wait(t), "address "+cfg.Addr+" is in use; pass --addr")
}

func TestRunRefusesADataDirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	first := launch(t, fakeConfig(t, dir, &syncBuffer{}, nil))
	first.waitReady(t)

	second := launch(t, fakeConfig(t, dir, &syncBuffer{}, nil))
	err := second.wait(t)
	require.ErrorContains(t, err, "data directory "+dir+" is in use by another mercato up")

	first.stop()
	require.NoError(t, first.wait(t))
	third := launch(t, fakeConfig(t, dir, &syncBuffer{}, nil))
	third.waitReady(t)
}

func TestChildEnvIsStableAcrossRestarts(t *testing.T) {
	cfg := Config{
		Addr: "127.0.0.1:8080", DataDir: "/data", AdminEmail: "admin@mercato.local",
		Services: []string{Identity, "orders", Gateway}, Env: []string{"DATABASE_URL=/elsewhere.db", "KEEP=1"},
	}
	addrs := map[string]ServiceAddrs{
		Identity: {GRPC: "127.0.0.1:1", HTTP: "127.0.0.1:2"},
		"orders": {GRPC: "127.0.0.1:3", HTTP: "127.0.0.1:4"},
		Gateway:  {GRPC: "127.0.0.1:5", HTTP: "127.0.0.1:6"},
	}
	first, err := ChildEnv(cfg, "nats://127.0.0.1:7", addrs, "admin-pass", "secret", "orders")
	require.NoError(t, err)
	again, err := ChildEnv(cfg, "nats://127.0.0.1:7", addrs, "admin-pass", "secret", "orders")
	require.NoError(t, err)
	require.Equal(t, first, again, "a restarted service gets the same environment")
	require.Contains(t, first, "KEEP=1")
	require.Contains(t, first, "DATABASE_URL=/data/orders.db")
	require.NotContains(t, first, "DATABASE_URL=/elsewhere.db")
	require.Contains(t, first, "MERCATO_IDENTITY_ADDR=127.0.0.1:1")
	require.Contains(t, first, "MERCATO_SERVICE_SECRET=secret")
	require.NotContains(t, first, "MERCATO_ADMIN_PASSWORD=admin-pass", "only identity learns the admin password")
}

func TestParseReplicas(t *testing.T) {
	every, err := ParseReplicas("2")
	require.NoError(t, err)
	require.Equal(t, 2, every["catalog"])
	require.NotContains(t, every, Gateway, "the gateway runs once")
	some, err := ParseReplicas(" catalog=3, orders=2 ")
	require.NoError(t, err)
	require.Equal(t, map[string]int{"catalog": 3, "orders": 2}, some)
	none, err := ParseReplicas("")
	require.NoError(t, err)
	require.Empty(t, none)

	for in, want := range map[string]string{
		"0":                   "replicas 0 is not between 1 and 16",
		"17":                  "replicas 17 is not between 1 and 16",
		"warehouse=2":         `replicas: unknown service "warehouse"`,
		"catalog=0":           "replicas: catalog=0 is not between 1 and 16",
		"catalog=99":          "replicas: catalog=99 is not between 1 and 16",
		"catalog":             `replicas "catalog": want a count (2) or service=count pairs`,
		"catalog=two":         `replicas "catalog=two": want a count`,
		"catalog=2,,orders=2": `want a count`,
		"catalog=2,catalog=3": "replicas: catalog is named twice",
	} {
		_, err := ParseReplicas(in)
		require.ErrorContains(t, err, want, in)
	}
}

func TestValidateReplicasAndNATS(t *testing.T) {
	cfg := validConfig(t)
	cfg.Services = []string{Identity, "catalog", Gateway}
	cfg.Replicas = map[string]int{"orders": 2, Gateway: 2, "catalog": 20}
	cfg.NATSURL = "http://nats:4222"
	err := cfg.Validate()
	require.ErrorContains(t, err, `replicas: "orders" is not a service this run starts`)
	require.ErrorContains(t, err, "replicas: the gateway runs once")
	require.ErrorContains(t, err, "replicas: catalog=20 is not between 1 and 16")
	require.ErrorContains(t, err, `NATS URL "http://nats:4222" is not nats://host:port`)
}

// Replicas run as processes of their own, each on its ports, named
// catalog-1, catalog-2 in the log and targets.json; every caller learns
// all of them.
func TestRunReplicas(t *testing.T) {
	dir := t.TempDir()
	cfg := fakeConfig(t, dir, &syncBuffer{}, nil)
	cfg.Replicas = map[string]int{"catalog": 2}
	r := launch(t, cfg)
	r.waitReady(t)
	info := r.l.Info()
	require.Len(t, info.Instances["catalog"], 2)
	first, second := info.Instances["catalog"][0], info.Instances["catalog"][1]
	require.NotEqual(t, first, second)
	require.Contains(t, info.PIDs, "catalog-1")
	require.Contains(t, info.PIDs, "catalog-2")
	require.Equal(t, map[string]string{
		"identity-1": info.Services["identity"].HTTP, "catalog-1": first.HTTP, "catalog-2": second.HTTP, "gateway-1": info.Services["gateway"].HTTP,
	}, targetsOf(t, dir))

	_, gatewayEnv := get(t, "http://"+info.Services["gateway"].HTTP+"/env/MERCATO_CATALOG_ADDR")
	require.Equal(t, first.GRPC+","+second.GRPC, gatewayEnv)
	for i, a := range []ServiceAddrs{first, second} {
		_, id := get(t, "http://"+a.HTTP+"/env/MERCATO_INSTANCE_ID")
		require.Equal(t, fmt.Sprintf("catalog-%d", i+1), id)
		_, dbURL := get(t, "http://"+a.HTTP+"/env/DATABASE_URL")
		require.Equal(t, filepath.Join(dir, "catalog.db"), dbURL, "replicas share the service's database")
	}
	require.Contains(t, r.out.String(), `catalog-2 | {"msg":"serving","service":"catalog"}`)
	require.Contains(t, r.out.String(), "    Services  identity×1 catalog×2 gateway×1\n", "the banner counts the instances")
	r.stop()
	require.NoError(t, r.wait(t))
	requireGone(t, info.PIDs)
}
