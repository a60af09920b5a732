package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/mercato-dev/mercato/internal/gen"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

func TestLimiterSet(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	s := newLimiterSet(2, 100, clock) // 2/s, burst 4

	for i := range 4 {
		_, ok := s.allow("a")
		require.True(t, ok, "request %d is within the burst", i)
	}
	wait, ok := s.allow("a")
	require.False(t, ok)
	require.InDelta(t, 500*time.Millisecond, wait, float64(time.Millisecond), "one token comes back every 500ms")

	_, ok = s.allow("b")
	require.True(t, ok, "keys have their own buckets")

	now = now.Add(500 * time.Millisecond)
	_, ok = s.allow("a")
	require.True(t, ok, "the bucket refills")
	_, ok = s.allow("a")
	require.False(t, ok)
}

func TestLimiterSetMemoryIsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := newLimiterSet(1, 1000, func() time.Time { return now })

	for i := range 10_000 {
		s.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	require.LessOrEqual(t, s.size(), 2000, "at most two generations of max buckets")

	// An active key survives rotations; an idle one is dropped.
	for range 4 {
		now = now.Add(s.idleTTL)
		s.allow("steady")
	}
	require.Equal(t, 1, s.size())
}

func TestLimiterSetKeepsStateOfRecentKeysAcrossRotation(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	start := now
	s := newLimiterSet(0.001, 100, func() time.Time { return now }) // burst 1, a token every 1000s
	now = start.Add(s.idleTTL / 2)
	_, ok := s.allow("a")
	require.True(t, ok)
	now = start.Add(s.idleTTL) // rotates: "a" moves to the previous generation, half refilled
	_, ok = s.allow("a")
	require.False(t, ok, "a rotation does not hand out a fresh bucket")
}

func testPolicy() accessPolicy {
	return newAccessPolicy(testUpstreams(func(string) string { return "" }))
}

func TestRequiredAccess(t *testing.T) {
	cases := []struct {
		method, path string
		want         Access // 0: no rule covers it
	}{
		{"GET", "/api/v1/products", Anyone},
		{"GET", "/api/v1/products/p1", Anyone},
		{"POST", "/api/v1/products", AdminOnly},
		{"PATCH", "/api/v1/products/p1", AdminOnly},
		{"DELETE", "/api/v1/products/p1", AdminOnly},
		{"DELETE", "/api/v1/products/", AdminOnly},
		{"PUT", "/api/v1/products/p1", AdminOnly},
		{"POST", "/api/v1/productsX", 0},
		{"GET", "/api/v1/inventory/SKU-1", AdminOnly},
		{"PUT", "/api/v1/inventory/SKU-1", AdminOnly},
		{"GET", "/api/v1/me", SignedIn},
		{"GET", "/api/v1/media", 0},
		{"POST", "/api/v1/auth/logout", SignedIn},
		{"POST", "/api/v1/auth/login", Anyone},
		{"GET", "/api/v1/cart", SignedIn},
		{"PUT", "/api/v1/cart/items/p1", SignedIn},
		{"POST", "/api/v1/orders", SignedIn},
		{"POST", "/api/v1/orders/o1/cancel", SignedIn},
		{"GET", "/api/v1/payments", SignedIn},
		{"GET", "/api/v1/notifications", SignedIn},
		{"GET", "/.well-known/jwks.json", Anyone},
		{"GET", "/openapi.json", Anyone},
		{"GET", "/docs", Anyone},
	}
	policy := testPolicy()
	for _, tc := range cases {
		got, covered := policy.requiredAccess(tc.method, tc.path)
		require.Equal(t, tc.want != 0, covered, "%s %s covered", tc.method, tc.path)
		require.Equal(t, tc.want, got, "%s %s", tc.method, tc.path)
	}
}

func TestRuleValidation(t *testing.T) {
	require.NoError(t, Rule{Prefix: "/api/v1/x", Access: SignedIn}.validate())
	require.ErrorContains(t, Rule{Prefix: "api/v1/x", Access: SignedIn}.validate(), "must start with /")
	require.ErrorContains(t, Rule{Prefix: "/api/v1/x/", Access: SignedIn}.validate(), "not end with one")
	require.ErrorContains(t, Rule{Prefix: "/api/v1/x"}.validate(), "says no access")
	require.ErrorContains(t, Rule{Prefix: "/api/v1/x", Methods: []string{"get"}, Access: Anyone}.validate(), "upper case")
}

func TestValidRequestID(t *testing.T) {
	require.True(t, validRequestID("abc-DEF_123.x"))
	require.True(t, validRequestID(strings.Repeat("a", 128)))
	for _, bad := range []string{"", strings.Repeat("a", 129), "a b", "a\nb", "a/b", "é", `a"b`} {
		require.False(t, validRequestID(bad), "%q", bad)
	}
}

func TestLastForwardedFor(t *testing.T) {
	ip, ok := lastForwardedFor([]string{"1.1.1.1, 2.2.2.2", "3.3.3.3 , 198.51.100.7 "})
	require.True(t, ok)
	require.Equal(t, "198.51.100.7", ip)
	ip, ok = lastForwardedFor([]string{"::ffff:10.0.0.1"})
	require.True(t, ok)
	require.Equal(t, "10.0.0.1", ip)
	for _, bad := range [][]string{nil, {""}, {"1.1.1.1, not-an-ip"}, {"1.1.1.1,"}} {
		_, ok := lastForwardedFor(bad)
		require.False(t, ok, "%q", bad)
	}
}

func TestRecoveryAnswersAProblem(t *testing.T) {
	logs := &syncBuffer{}
	g := &Gateway{log: slog.New(slog.NewJSONHandler(logs, nil)), ids: newRequestIDs()}
	h := g.requestID(g.recovery(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("nil map somewhere")
	})))
	rec := httptest.NewRecorder()

	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/products/p1", nil))

	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Equal(t, problemContentType, rec.Header().Get("Content-Type"))
	body, _ := io.ReadAll(rec.Body)
	require.Contains(t, string(body), `"detail":"internal error"`)
	require.NotContains(t, string(body), "nil map")
	require.Contains(t, logs.String(), "nil map somewhere")
	require.Contains(t, logs.String(), "stack")
}

func TestRecoveryAbortsAStartedResponse(t *testing.T) {
	g := &Gateway{log: slog.New(slog.NewJSONHandler(io.Discard, nil)), ids: newRequestIDs()}
	h := g.requestID(g.recovery(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		panic("late")
	})))
	require.PanicsWithValue(t, http.ErrAbortHandler, func() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	})
}

func TestGeneratedOpenAPIDocumentsDoNotConflict(t *testing.T) {
	g := &Gateway{statuses: map[string]int{}}
	for _, a := range testAPIs {
		for m, c := range a.api.Statuses {
			g.statuses[m] = c
		}
	}
	// Every generated document, served yet or not, so a clash is found
	// before the service is added to the upstreams.
	_, conflicts, err := mergeOpenAPI(gen.OpenAPI, nil, g.statuses, testPolicy())
	require.NoError(t, err)
	require.Empty(t, conflicts, "services' documents must not define the same thing differently")

	doc, conflicts, err := mergeOpenAPI(gen.OpenAPI, testUpstreamNames(), g.statuses, testPolicy())
	require.NoError(t, err)
	require.Empty(t, conflicts)
	corrected := 0
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			responses := op.(map[string]any)["responses"].(map[string]any)
			require.Contains(t, responses, "default", "%s %s describes its errors", method, path)
			for _, code := range []string{"201", "202", "204"} {
				if _, ok := responses[code]; ok {
					corrected++
				}
			}
		}
	}
	require.Equal(t, len(g.statuses), corrected, "every non-200 success status is documented")
}

func TestMergeOpenAPIReportsConflicts(t *testing.T) {
	fsys := fstest.MapFS{
		"a/v1/a.swagger.json": {Data: []byte(`{"paths":{"/x":{"get":{"operationId":"A_Get","responses":{"200":{"description":"ok"}}}}},"definitions":{"v1Item":{"type":"object","properties":{"id":{"type":"string"}}}}}`)},
		"b/v1/b.swagger.json": {Data: []byte(`{"paths":{"/x":{"get":{"operationId":"B_Get"}},"/y":{"get":{"operationId":"B_Y"}}},"definitions":{"v1Item":{"type":"object","properties":{"sku":{"type":"string"}}}}}`)},
	}
	doc, conflicts, err := mergeOpenAPI(fsys, nil, nil, testPolicy())
	require.NoError(t, err)
	require.Len(t, conflicts, 2)
	require.Contains(t, conflicts[0]+conflicts[1], "GET /x")
	require.Contains(t, conflicts[0]+conflicts[1], "v1Item")
	require.Contains(t, doc["paths"], "/y")
}

func TestRouteTable(t *testing.T) {
	doc := map[string]any{"paths": map[string]any{
		"/api/v1/products": nil, "/api/v1/products/{id}": nil, "/api/v1/orders/{id}/cancel": nil, "/api/v1/orders/{id}/{x}": nil,
	}}
	rt := newRouteTable(doc)
	require.Equal(t, "/api/v1/products/{id}", rt.match("/api/v1/products/p1"))
	require.Equal(t, "/api/v1/products", rt.match("/api/v1/products"))
	require.Equal(t, "/api/v1/orders/{id}/cancel", rt.match("/api/v1/orders/o1/cancel"))
	require.Equal(t, "/docs", rt.match("/docs"))
	require.Equal(t, "", rt.match("/api/v1/products/p1/extra/more"))
}

func TestResourceIsThePathUpToItsThirdSegment(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/products/p1":        "/api/v1/products",
		"/api/v1/products":           "/api/v1/products",
		"/api/v1/products/":          "/api/v1/products",
		"/api/v1/orders/o1/events":   "/api/v1/orders",
		"/.well-known/jwks.json":     "/.well-known/jwks.json",
		"/api/v1/cart/items/{id}":    "/api/v1/cart",
		"/":                          "/",
		"":                           "",
		"/api/v1/products/p1/extra/": "/api/v1/products",
	} {
		require.Equal(t, want, resource(path), path)
	}
}

// Every documented route reaches its service through the mux its
// resource is sent to: none is answered by the gateway's own routing
// errors, and a path outside every resource still is.
func TestEveryRouteReachesItsService(t *testing.T) {
	tg := startGateway(t, func(c *Config) { c.RateLimitRPS = 0 })
	admin := bearer(tg.issuer.Token("admin-1", auth.RoleAdmin))
	routes, err := upstreamRoutes(gen.OpenAPI, testUpstreamNames())
	require.NoError(t, err)
	doc, _, err := mergeOpenAPI(gen.OpenAPI, testUpstreamNames(), nil, testPolicy())
	require.NoError(t, err)
	paths := doc["paths"].(map[string]any)
	checked := 0
	for _, name := range testUpstreamNames() {
		for _, route := range routes[name] {
			path := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(route, "x1")
			for method := range paths[route].(map[string]any) {
				resp, body := tg.do(t, strings.ToUpper(method), path, strings.NewReader("{}"), admin)
				require.NotContains(t, string(body), "no such route", "%s %s", method, route)
				require.NotContains(t, string(body), "method not allowed on this route", "%s %s", method, route)
				require.NotEqual(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", method, route)
				checked++
			}
		}
	}
	require.Greater(t, checked, 20)

	resp, body := tg.do(t, http.MethodGet, "/api/v1/nothing/here", nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Contains(t, string(body), "no such route")
	resp, body = tg.do(t, http.MethodPut, "/api/v1/products/p1", strings.NewReader("{}"), admin)
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Contains(t, string(body), "method not allowed on this route")
}

// The per-resource muxes are worked out from the OpenAPI documents, so
// every HTTP binding a service registers must be in its document; a binding
// left out (a hidden operation) could land on a mux without its service.
func TestOpenAPIDocumentsEveryBinding(t *testing.T) {
	routes, err := upstreamRoutes(gen.OpenAPI, testUpstreamNames())
	require.NoError(t, err)
	bindings := 0
	for _, name := range testUpstreamNames() {
		raw, err := os.ReadFile(filepath.Join("..", "..", "api", "proto", name, "v1", name+".http.yaml"))
		require.NoError(t, err)
		var cfg struct {
			HTTP struct {
				Rules []httpRule `json:"rules"`
			} `json:"http"`
		}
		require.NoError(t, yaml.Unmarshal(raw, &cfg))
		var walk func([]httpRule)
		walk = func(rules []httpRule) {
			for _, r := range rules {
				for _, path := range []string{r.Get, r.Put, r.Post, r.Patch, r.Delete} {
					if path != "" {
						require.Contains(t, routes[name], path, "%s: %s is bound but not documented", name, r.Selector)
						bindings++
					}
				}
				walk(r.AdditionalBindings)
			}
		}
		walk(cfg.HTTP.Rules)
	}
	require.Greater(t, bindings, 20)
}

type httpRule struct {
	Selector           string     `json:"selector"`
	Get                string     `json:"get"`
	Put                string     `json:"put"`
	Post               string     `json:"post"`
	Patch              string     `json:"patch"`
	Delete             string     `json:"delete"`
	AdditionalBindings []httpRule `json:"additional_bindings"`
}
