package system

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/gateway"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

func TestTableIsConsistent(t *testing.T) {
	services := Services()
	names := Names()
	require.Equal(t, "identity", names[0], "identity starts first: every service verifies tokens with its keys")
	require.Equal(t, gatewayName, names[len(names)-1], "the gateway starts last")
	seen := map[string]bool{}
	for _, s := range services {
		require.Regexp(t, `^[a-z][a-z0-9]*$`, s.Name, "a name becomes a database, a file and a variable name")
		require.False(t, seen[s.Name], "%s is listed twice", s.Name)
		seen[s.Name] = true
		require.NotNil(t, s.Serve, "%s can be served", s.Name)
		require.Equal(t, s.Database, s.Migrate != nil, "%s has migrations exactly when it has a database", s.Name)
		for _, callee := range s.Calls {
			_, ok := Lookup(callee)
			require.True(t, ok, "%s calls %q, which is not in the table", s.Name, callee)
			require.NotEqual(t, s.Name, callee, "%s calls itself", s.Name)
		}
		if s.API != nil {
			require.NotNil(t, s.API.Register, "%s registers its routes", s.Name)
			require.NotEmpty(t, s.API.Access, "%s says who may call its routes", s.Name)
		}
	}
	// Streams: each has its own name and domain.
	require.NoError(t, events.Config{URL: "nats://x:4222", StreamReplicas: 1, Streams: Streams()}.Validate())

	gw, _ := Lookup(gatewayName)
	var withAPI []string
	for _, s := range services {
		if s.API != nil {
			withAPI = append(withAPI, s.Name)
		}
	}
	require.Equal(t, withAPI, gw.Calls, "the gateway calls every service with a public API")
}

// The Makefile generates code for the services with a public API; it is
// plain make, so this keeps its list honest.
func TestMakefileGeneratesEveryServiceWithAnAPI(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^SERVICES_WITH_API :=(.*)$`).FindSubmatch(raw)
	require.NotNil(t, m, "the Makefile sets SERVICES_WITH_API")
	inMakefile := strings.Fields(string(m[1]))
	var inTable []string
	for _, s := range Services() {
		if s.API != nil {
			inTable = append(inTable, s.Name)
		}
	}
	require.ElementsMatch(t, inTable, inMakefile)
	for _, name := range inTable {
		_, err := os.Stat(filepath.Join("..", "..", "api", "proto", name, "v1", name+".http.yaml"))
		require.NoError(t, err, "%s has HTTP rules", name)
	}
}

// openAPI starts a gateway in front of the table's services (unreachable:
// only the gateway's own answers matter here) and returns its document.
func openAPI(t *testing.T) map[string]any {
	t.Helper()
	env := config.NewEnvFrom(map[string]string{"MERCATO_ADDR": "127.0.0.1:0", "MERCATO_HTTP_ADDR": "127.0.0.1:0"})
	gw, _ := Lookup(gatewayName)
	var backends []Service
	for _, name := range gw.Calls {
		s, _ := Lookup(name)
		backends = append(backends, s)
	}
	cfg, err := readGateway(env, backends)
	require.NoError(t, err)
	for i := range cfg.Upstreams {
		cfg.Upstreams[i].Target = "127.0.0.1:1"
	}
	cfg.Keys = auth.KeysConfig{Source: authtest.New(t).KeySource()}
	ctx, cancel := context.WithCancel(t.Context())
	g, err := gateway.New(ctx, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + g.Addr() + "/openapi.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(body, &doc))
	return doc
}

// Who may call each route, as the table says: every documented route is
// covered by a rule (none is closed), and the rules give what the API
// promises.
func TestAccessRulesOfTheTable(t *testing.T) {
	doc := openAPI(t)
	paths := doc["paths"].(map[string]any)
	access := map[string]string{}
	for path, item := range paths {
		for method, op := range item.(map[string]any) {
			a, _ := op.(map[string]any)["x-mercato-access"].(string)
			if a == "" {
				a = gateway.Anyone.String()
			}
			access[strings.ToUpper(method)+" "+path] = a
		}
	}
	for op, a := range access {
		require.NotEqual(t, "closed", a, "%s has no access rule", op)
	}
	want := map[string]string{
		"POST /api/v1/auth/register":      "anyone",
		"POST /api/v1/auth/login":         "anyone",
		"POST /api/v1/auth/refresh":       "anyone",
		"POST /api/v1/auth/logout":        "user",
		"GET /api/v1/me":                  "user",
		"GET /.well-known/jwks.json":      "anyone",
		"GET /api/v1/products":            "anyone",
		"GET /api/v1/products/{id}":       "anyone",
		"POST /api/v1/products":           "admin",
		"PATCH /api/v1/products/{id}":     "admin",
		"DELETE /api/v1/products/{id}":    "admin",
		"GET /api/v1/inventory/{sku}":     "admin",
		"PUT /api/v1/inventory/{sku}":     "admin",
		"GET /api/v1/cart":                "user",
		"POST /api/v1/orders":             "user",
		"GET /api/v1/orders/{id}":         "user",
		"POST /api/v1/orders/{id}/cancel": "user",
		"GET /api/v1/admin/orders/stuck":  "admin",
		"GET /api/v1/payments":            "user",
		"GET /api/v1/notifications":       "user",
	}
	for op, a := range want {
		got, ok := access[op]
		require.True(t, ok, "%s is documented", op)
		require.Equal(t, a, got, op)
	}
	// docs/api.md promises the same, route by route.
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(raw), "<!-- route-table:begin -->")
	require.True(t, ok, "docs/api.md has its route table")
	table, _, _ = strings.Cut(table, "<!-- route-table:end -->")
	row := regexp.MustCompile("(?m)^\\| `([A-Z]+)` \\| `([^`]+)` \\| ([a-z ]+) \\|")
	rows := row.FindAllStringSubmatch(table, -1)
	require.Len(t, rows, len(access), "docs/api.md lists every documented route once")
	for _, r := range rows {
		who := map[string]string{"anyone": "anyone", "user": "user", "owner or admin": "user", "admin": "admin"}[r[3]]
		require.NotEmpty(t, who, "docs/api.md: unknown caller %q", r[3])
		require.Equal(t, who, access[r[1]+" "+r[2]], "docs/api.md: who may call %s %s", r[1], r[2])
	}

	cartItems := false
	for op, a := range access {
		if strings.HasPrefix(op, "PUT /api/v1/cart/items/") {
			cartItems = true
			require.Equal(t, "user", a, op)
		}
	}
	require.True(t, cartItems, "the cart's item route is documented")
}
