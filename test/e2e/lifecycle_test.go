package e2e

import (
	"context"
	"crypto/rand"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	services "github.com/mercato-dev/mercato/internal/system"
)

// allServices are the processes `mercato up` runs: every service of the
// table.
var allServices = services.Names()

// TestSIGTERMStopsEverything checks what Ctrl-C (or a supervisor's
// SIGTERM) does: every service stops gracefully, the launcher exits 0 and
// no process is left behind.
func TestSIGTERMStopsEverything(t *testing.T) {
	s := startSystem(t, options{adminPassword: e2eAdminPassword})
	pids := s.servicePIDs(t)
	require.ElementsMatch(t, allServices, slices.Collect(maps.Keys(pids)), "every service runs as its own process")
	for name, pid := range pids {
		require.False(t, processGone(pid), "%s (pid %d) should be running", name, pid)
		require.NotEqual(t, s.cmd.Process.Pid, pid)
	}

	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		t.Fatalf("mercato up did not exit within %s", stopTimeout)
	}
	require.Equal(t, 0, s.cmd.ProcessState.ExitCode(), "a requested stop is a success")
	for name, pid := range pids {
		require.True(t, processGone(pid), "%s (pid %d) is still running", name, pid)
	}

	stopped := map[string]string{}
	var order []string
	for _, l := range s.launcherLogs(t) {
		if l.Msg == "service stopped" {
			stopped[l.Name] = l.Status
			order = append(order, l.Name)
		}
	}
	for name := range pids {
		require.Equal(t, "exit status 0", stopped[name], "%s stopped gracefully", name)
	}
	require.Equal(t, "gateway", order[0], "the gateway stops first")
	out := s.out.String()
	require.Contains(t, out, `"msg":"stopped","service":"catalog"`, "catalog drained and said so")
	require.Less(t, strings.Index(out, `"msg":"stopped","service":"gateway"`),
		strings.Index(out, `"msg":"shutting down","service":"catalog"`),
		"services behind the gateway are asked to stop only after it has stopped")
}

// TestSecondRunKeepsData stops the system and starts it again on the same
// data directory: users, products and the generated admin password are
// still there, and the demo catalog is not seeded twice.
func TestSecondRunKeepsData(t *testing.T) {
	dir := t.TempDir()
	first := startSystem(t, options{dataDir: dir})
	password := first.adminPassword
	require.GreaterOrEqual(t, len(password), 20, "a generated password is strong")

	email := uniqueEmail("returning")
	registered := first.register(t, email, "correct horse battery", "Returning Customer")
	admin := first.login(t, first.adminEmail, password).AccessToken
	var created product
	first.do(t, http.MethodPost, "/api/v1/products", admin, map[string]any{
		"sku": "E2E-KEEP-1", "name": "Kept Product", "price_cents": 999, "currency": "EUR",
	}).decode(t, http.StatusCreated, &created)
	products := first.listAll(t, nil, 100)
	require.Len(t, products, seededCount+1)
	first.requireStock(t, admin, seededSKUs[0], 100, 0)
	first.setStock(t, admin, seededSKUs[0], 37)
	first.stop(t)
	require.Equal(t, 0, first.cmd.ProcessState.ExitCode())

	second := startSystem(t, options{dataDir: dir})
	require.Equal(t, password, second.adminPassword, "the second run prints the same admin password")
	require.Equal(t, fingerprints(products), fingerprints(second.listAll(t, nil, 100)), "the catalog is unchanged and not seeded again")

	var me struct{ ID string }
	pair := second.login(t, email, "correct horse battery")
	second.do(t, http.MethodGet, "/api/v1/me", pair.AccessToken, nil).decode(t, http.StatusOK, &me)
	require.Equal(t, registered.ID, me.ID)
	second.login(t, second.adminEmail, password)

	var got product
	second.do(t, http.MethodGet, "/api/v1/products/"+created.ID, "", nil).decode(t, http.StatusOK, &got)
	require.Equal(t, created, got)

	admin = second.login(t, second.adminEmail, password).AccessToken
	second.requireStock(t, admin, seededSKUs[0], 37, 0)
	second.requireStock(t, admin, seededSKUs[1], 100, 0)
}

// TestPostgres runs the happy path with every service's data in its own
// PostgreSQL database.
func TestPostgres(t *testing.T) {
	server := dbtest.PostgresServerURL()
	prefix := "e2e_" + strings.ToLower(rand.Text()[:8]) + "_"
	t.Cleanup(func() { dropDatabases(t, server, prefix) })

	s := startSystem(t, options{adminPassword: e2eAdminPassword, postgres: server, dbPrefix: prefix})
	require.Contains(t, s.out.String(), "(PostgreSQL, databases "+prefix+"<service>)")

	var want []string
	for _, svc := range allServices {
		if svc != "gateway" {
			want = append(want, prefix+svc)
		}
	}
	require.ElementsMatch(t, want, databases(t, server, prefix), "one database per service that has data")

	all := s.listAll(t, nil, 7)
	require.Len(t, all, seededCount)
	tea := s.listAll(t, url.Values{"category": {"tea"}}, 100)
	require.Contains(t, skus(tea), "TEA-SEN-100")

	email := uniqueEmail("pg")
	registered := s.register(t, email, "correct horse battery", "Postgres User")
	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/auth/register", "",
		map[string]string{"email": email, "password": "correct horse battery", "name": "Again"}), http.StatusConflict)
	pair := s.login(t, email, "correct horse battery")
	var me user
	s.do(t, http.MethodGet, "/api/v1/me", pair.AccessToken, nil).decode(t, http.StatusOK, &me)
	require.Equal(t, registered, me)
	var rotated tokenPair
	s.do(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refresh_token": pair.RefreshToken}).
		decode(t, http.StatusOK, &rotated)
	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/auth/refresh", "",
		map[string]string{"refresh_token": pair.RefreshToken}), http.StatusUnauthorized)

	admin := s.login(t, s.adminEmail, s.adminPassword).AccessToken
	var created product
	r := s.do(t, http.MethodPost, "/api/v1/products", admin, map[string]any{
		"sku": "E2E-PG-1", "name": "Postgres Mug", "price_cents": 1500, "currency": "USD", "categories": []string{"kitchen"},
	})
	r.decode(t, http.StatusCreated, &created)
	var patched product
	s.do(t, http.MethodPatch, "/api/v1/products/"+created.ID, admin, map[string]any{"name": "Postgres Mug, Large"},
		"If-Match", r.header.Get("ETag")).decode(t, http.StatusOK, &patched)
	require.Equal(t, "Postgres Mug, Large", patched.Name)
	requireProblem(t, s.do(t, http.MethodPatch, "/api/v1/products/"+created.ID, admin, map[string]any{"name": "Stale"},
		"If-Match", r.header.Get("ETag")), http.StatusPreconditionFailed)
	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/products", s.customer(t), map[string]any{
		"sku": "E2E-PG-2", "name": "Nope", "price_cents": 1, "currency": "USD"}), http.StatusForbidden)
	require.Equal(t, http.StatusNoContent, s.do(t, http.MethodDelete, "/api/v1/products/"+created.ID, admin, nil).status)
	require.Equal(t, fingerprints(all), fingerprints(s.listAll(t, nil, 100)))
}

// databases lists the databases whose name starts with prefix.
func databases(t *testing.T, server, prefix string) []string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), server)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(t.Context()))
	rows, err := conn.Query(t.Context(), `SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname`, prefix)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// dropDatabases removes what the test created; it runs after the system
// has stopped (cleanups run last-registered first).
func dropDatabases(t *testing.T, server, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Errorf("drop test databases: %v", err)
		return
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, prefix)
	if err != nil {
		t.Errorf("list test databases: %v", err)
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Errorf("list test databases: %v", err)
		return
	}
	for _, name := range names {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	}
}

// runUp runs `mercato up` with args expecting it to fail at start, and
// returns its exit code and output.
func runUp(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, mercatoBin, append([]string{"up", "--data", t.TempDir()}, args...)...)
	out, _ := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "mercato up should have given up at once:\n%s", out)
	return cmd.ProcessState.ExitCode(), string(out)
}

func TestUpExplainsWhyItCannotStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	code, out := runUp(t, "--addr", busy.Addr().String())
	require.Equal(t, 1, code)
	require.Equal(t, "mercato: address "+busy.Addr().String()+" is in use; pass --addr\n", out)

	code, out = runUp(t, "--addr", "127.0.0.1:0", "--postgres", "postgres://postgres:wrong@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	require.Equal(t, 1, code)
	require.Contains(t, out, "mercato: cannot reach PostgreSQL at postgres://postgres:xxxxx@127.0.0.1:1/postgres")
	require.NotContains(t, out, "wrong", "the password is not printed")

	code, out = runUp(t, "--addr", "localhost", "--admin-email", "root")
	require.Equal(t, 2, code)
	require.Equal(t, "mercato: up is misconfigured:\n"+
		"  - address \"localhost\" is not host:port\n"+
		"  - admin email \"root\" is not an email address\n", out)
}
