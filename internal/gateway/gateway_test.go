package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

func decodeJSON(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(body, &v), "body: %s", body)
	return v
}

// requireProblem checks resp is a well-formed problem with code and returns it.
func requireProblem(t testing.TB, resp *http.Response, body []byte, code int) problem {
	t.Helper()
	require.Equal(t, code, resp.StatusCode, "body: %s", body)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	var p problem
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&p), "body: %s", body)
	require.Equal(t, "about:blank", p.Type)
	require.Equal(t, code, p.Status)
	if code == statusClientClosedRequest {
		require.Equal(t, "Client Closed Request", p.Title)
	} else {
		require.Equal(t, http.StatusText(code), p.Title)
	}
	require.NotEmpty(t, p.Detail)
	require.Equal(t, resp.Request.URL.Path, p.Instance)
	require.NotEmpty(t, p.RequestID)
	require.Equal(t, resp.Header.Get("X-Request-Id"), p.RequestID)
	return p
}

func TestGetProductIsTranscodedWithSnakeCaseJSON(t *testing.T) {
	tg := startGateway(t, nil)

	resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)

	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	got := decodeJSON(t, body)
	require.Equal(t, "p1", got["id"])
	require.Equal(t, float64(4599), got["price_cents"])
	require.Equal(t, "https://img.example/p1", got["image_url"])
	require.Equal(t, "2025-01-02T03:04:05Z", got["created_at"])
	require.Contains(t, got, "description", "unset fields are present")
	require.Equal(t, "", got["description"])
	require.NotContains(t, got, "priceCents")
	require.Equal(t, `"v3"`, resp.Header.Get("ETag"))
	for name := range resp.Header {
		require.False(t, strings.HasPrefix(name, "Grpc-"), "header %s leaks gRPC metadata", name)
	}
	require.Empty(t, resp.Header.Get("X-Internal-Detail"))

	call := tg.catalog.lastCall(t)
	require.Equal(t, catalogv1.CatalogService_GetProduct_FullMethodName, call.method)
	require.Equal(t, "p1", call.req.(*catalogv1.GetProductRequest).GetId())
}

func TestQueryParametersPassThrough(t *testing.T) {
	tg := startGateway(t, nil)

	resp, body := tg.do(t, http.MethodGet, "/api/v1/products?q=kettle&category=kitchen&page_size=3&page_token=abc", nil, nil)

	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	req := tg.catalog.lastCall(t).req.(*catalogv1.ListProductsRequest)
	require.Equal(t, "kettle", req.GetQ())
	require.Equal(t, "kitchen", req.GetCategory())
	require.Equal(t, int32(3), req.GetPageSize())
	require.Equal(t, "abc", req.GetPageToken())
	got := decodeJSON(t, body)
	require.Equal(t, "after-abc", got["next_page_token"])
	require.Len(t, got["products"], 3)

	resp, body = tg.do(t, http.MethodGet, "/api/v1/products?page_size=many", nil, nil)
	p := requireProblem(t, resp, body, http.StatusBadRequest)
	require.Contains(t, p.Detail, "page_size")
}

func TestSuccessStatusesFollowTheContract(t *testing.T) {
	tg := startGateway(t, nil)
	admin := bearer(tg.issuer.Token("admin-1", auth.RoleAdmin))
	customer := bearer(tg.issuer.Token("u-1", auth.RoleCustomer))

	resp, body := tg.do(t, http.MethodPost, "/api/v1/auth/register",
		strings.NewReader(`{"email":"a@example.test","password":"long enough","name":"Ann"}`), nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "body: %s", body)
	require.Equal(t, "a@example.test", decodeJSON(t, body)["email"])

	resp, body = tg.do(t, http.MethodPost, "/api/v1/auth/login", strings.NewReader(`{"email":"a@example.test","password":"long enough"}`), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	require.Equal(t, float64(900), decodeJSON(t, body)["expires_in"])

	resp, body = tg.do(t, http.MethodPost, "/api/v1/products",
		strings.NewReader(`{"sku":"K-1","name":"Kettle","price_cents":4599,"currency":"EUR","categories":["kitchen"]}`), admin)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "body: %s", body)
	created := decodeJSON(t, body)
	require.Equal(t, "p-new", created["id"])
	require.Equal(t, float64(4599), created["price_cents"])

	resp, body = tg.do(t, http.MethodDelete, "/api/v1/products/p1", nil, admin)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "body: %s", body)
	require.Empty(t, body)
	require.Empty(t, resp.Header.Get("Content-Type"))

	resp, body = tg.do(t, http.MethodPost, "/api/v1/auth/logout", strings.NewReader(`{"refresh_token":"r"}`), customer)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "body: %s", body)
	require.Empty(t, body)
}

func TestGRPCErrorsBecomeProblems(t *testing.T) {
	tg := startGateway(t, nil)

	kinded := func(kind apperr.Kind, msg string) error { return server.Status(apperr.New(kind, msg)).Err() }
	cases := []struct {
		name       string
		err        error
		header     metadata.MD
		wantStatus int
		wantDetail string
	}{
		{"invalid", kinded(apperr.Invalid, "name is required"), nil, 400, "name is required"},
		{"not found", kinded(apperr.NotFound, "product not found"), nil, 404, "product not found"},
		{"conflict", kinded(apperr.Conflict, "sku is taken"), nil, 409, "sku is taken"},
		{"aborted", status.Error(codes.Aborted, "concurrent update"), nil, 409, "concurrent update"},
		{"unauthenticated", kinded(apperr.Unauthenticated, "authentication required"), nil, 401, "authentication required"},
		{"forbidden", kinded(apperr.Forbidden, "admin role required"), nil, 403, "admin role required"},
		{"precondition failed", kinded(apperr.PreconditionFailed, "product was changed"), nil, 412, "product was changed"},
		{"failed precondition without reason", status.Error(codes.FailedPrecondition, "not now"), nil, 400, "not now"},
		{"unprocessable", kinded(apperr.Unprocessable, "cart is empty"), nil, 422, "cart is empty"},
		{"too many requests", kinded(apperr.TooManyRequests, "slow down"), metadata.Pairs("retry-after", "7"), 429, "slow down"},
		{"unavailable kinded", kinded(apperr.Unavailable, "payments are down"), nil, 503, "payments are down"},
		{"unavailable from transport", status.Error(codes.Unavailable, "connection refused to 10.0.0.7:9090"), nil, 503, "service unavailable, try again later"},
		{"deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), nil, 504, "request timed out"},
		{"unimplemented", status.Error(codes.Unimplemented, "unknown method"), nil, 501, "not implemented"},
		{"internal", status.Error(codes.Internal, "pq: password authentication failed for user mercato"), nil, 500, "internal error"},
		{"unknown", status.Error(codes.Unknown, "boom at line 42"), nil, 500, "internal error"},
		{"data loss", status.Error(codes.DataLoss, "disk ate it"), nil, 500, "internal error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg.catalog.setReply(t, func(ctx context.Context, _ string, _ any) (any, error) {
				if tc.header != nil {
					require.NoError(t, setHeader(ctx, tc.header))
				}
				return nil, tc.err
			})

			resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)

			p := requireProblem(t, resp, body, tc.wantStatus)
			require.Equal(t, tc.wantDetail, p.Detail)
			require.Equal(t, "/api/v1/products/p1", p.Instance)
			if tc.wantStatus == http.StatusTooManyRequests {
				require.Equal(t, "7", resp.Header.Get("Retry-After"))
			}
			if tc.wantStatus == http.StatusInternalServerError {
				st, _ := status.FromError(tc.err)
				require.NotContains(t, string(body), st.Message())
				require.Eventually(t, func() bool {
					return logHas(tg.logs.String(), "upstream call failed", st.Message(), p.RequestID)
				}, 5*time.Second, 10*time.Millisecond, "the real error is logged with the request id")
			}
		})
	}
}

// logHas reports whether one log line contains every part.
func logHas(logs string, parts ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func TestRequestBodiesAreCheckedStrictly(t *testing.T) {
	tg := startGateway(t, nil)
	admin := bearer(tg.issuer.Token("admin-1", auth.RoleAdmin))

	cases := []struct {
		name, path, body string
		header           http.Header
		wantInDetail     string
	}{
		{"role on register", "/api/v1/auth/register", `{"email":"a@example.test","password":"long enough","role":"admin"}`, nil, `unknown field "role"`},
		{"id on create", "/api/v1/products", `{"id":"mine","sku":"K","name":"K","price_cents":1,"currency":"EUR"}`, admin, `unknown field "id"`},
		{"malformed JSON", "/api/v1/auth/login", `{"email": "a@example.test",`, nil, "invalid request"},
		{"wrong type", "/api/v1/products", `{"sku":"K","name":"K","price_cents":"cheap","currency":"EUR"}`, admin, "price_cents"},
		{"not an object", "/api/v1/auth/login", `["a@example.test"]`, nil, "invalid request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tg.catalog.callCount() + tg.identity.callCount()

			resp, body := tg.do(t, http.MethodPost, tc.path, strings.NewReader(tc.body), tc.header)

			p := requireProblem(t, resp, body, http.StatusBadRequest)
			require.Contains(t, p.Detail, tc.wantInDetail)
			require.NotContains(t, p.Detail, "proto:")
			require.Equal(t, before, tg.catalog.callCount()+tg.identity.callCount(), "nothing reaches a service")
		})
	}
}

func TestOversizedBodiesAreRefused(t *testing.T) {
	tg := startGateway(t, func(c *Config) { c.BodyLimitBytes = 1024 })
	big := `{"email":"` + strings.Repeat("a", 2048) + `@example.test","password":"x"}`

	resp, body := tg.do(t, http.MethodPost, "/api/v1/auth/login", strings.NewReader(big), nil)
	requireProblem(t, resp, body, http.StatusRequestEntityTooLarge)

	// Without a declared length the limit is found while reading.
	resp, body = tg.do(t, http.MethodPost, "/api/v1/auth/login", io.MultiReader(strings.NewReader(big)), nil) // sent chunked
	p := requireProblem(t, resp, body, http.StatusRequestEntityTooLarge)
	require.Contains(t, p.Detail, "1024 bytes")
	require.Zero(t, tg.identity.callCount())

	resp, body = tg.do(t, http.MethodPost, "/api/v1/auth/login", strings.NewReader(`{"email":"a@example.test","password":"x"}`), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "a small body still passes: %s", body)
}

func TestRateLimits(t *testing.T) {
	t.Run("per client IP", func(t *testing.T) {
		tg := startGateway(t, func(c *Config) { c.RateLimitRPS = 1 })
		for i := range 2 { // the burst
			resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, "request %d: %s", i, body)
		}
		resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)
		requireProblem(t, resp, body, http.StatusTooManyRequests)
		wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		require.NoError(t, err)
		require.GreaterOrEqual(t, wait, 1)
		require.Equal(t, 2, tg.catalog.callCount())
	})
	t.Run("per user", func(t *testing.T) {
		// Each request comes from another address, so only the user's
		// own bucket can run dry.
		tg := startGateway(t, func(c *Config) { c.RateLimitRPS = 1; c.TrustForwardedFor = true })
		token := tg.issuer.Token("u-1", auth.RoleCustomer)
		for i := range 3 {
			h := bearer(token)
			h.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1))
			resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, h)
			if i < 2 {
				require.Equal(t, http.StatusOK, resp.StatusCode, "request %d: %s", i, body)
				continue
			}
			requireProblem(t, resp, body, http.StatusTooManyRequests)
		}
		h := bearer(tg.issuer.Token("u-2", auth.RoleCustomer))
		h.Set("X-Forwarded-For", "203.0.113.9")
		resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, h)
		require.Equal(t, http.StatusOK, resp.StatusCode, "another user is not limited: %s", body)
	})
	t.Run("stricter on login", func(t *testing.T) {
		tg := startGateway(t, func(c *Config) { c.RateLimitRPS = 100; c.LoginRateLimitRPS = 1 })
		login := func() *http.Response {
			resp, _ := tg.do(t, http.MethodPost, "/api/v1/auth/login", strings.NewReader(`{"email":"a@example.test","password":"x"}`), nil)
			return resp
		}
		require.Equal(t, http.StatusOK, login().StatusCode)
		require.Equal(t, http.StatusOK, login().StatusCode)
		require.Equal(t, http.StatusTooManyRequests, login().StatusCode)
		resp, _ := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "other routes keep the general limit")
	})
	t.Run("zero turns it off", func(t *testing.T) {
		tg := startGateway(t, func(c *Config) { c.RateLimitRPS = 0 })
		for i := range 50 {
			resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, "request %d: %s", i, body)
		}
	})
}

func TestTokens(t *testing.T) {
	tg := startGateway(t, nil)
	iss := tg.issuer
	pub, err := iss.KeySource().Key(t.Context(), iss.KeyID())
	require.NoError(t, err)
	valid := iss.Token("u-1", auth.RoleCustomer)
	claims := func(adjust func(*auth.Claims)) auth.Claims {
		now := time.Now()
		c := auth.Claims{Role: auth.RoleCustomer}
		c.Subject, c.Issuer, c.Audience = "u-1", auth.DefaultIssuer, []string{auth.DefaultAudience}
		c.IssuedAt, c.ExpiresAt = jwtTime(now), jwtTime(now.Add(time.Minute))
		adjust(&c)
		return c
	}

	bad := map[string]string{
		"alg none":               unsignedToken(t, iss.KeyID(), claims(func(*auth.Claims) {})),
		"HS256 keyed with pub":   hmacToken(t, iss.KeyID(), pub, claims(func(*auth.Claims) {})),
		"expired":                iss.Sign(claims(func(c *auth.Claims) { c.ExpiresAt = jwtTime(time.Now().Add(-time.Hour)) })),
		"wrong audience":         iss.Sign(claims(func(c *auth.Claims) { c.Audience = []string{"someone-else"} })),
		"wrong issuer":           iss.Sign(claims(func(c *auth.Claims) { c.Issuer = "evil" })),
		"unknown kid":            withKid(t, valid, "nobody"),
		"tampered payload":       tamper(t, valid),
		"garbage":                "not.a.token",
		"unknown role":           iss.Sign(claims(func(c *auth.Claims) { c.Role = "superuser" })),
		"signed by another key":  otherIssuerToken(t),
		"not a bearer token":     "",
		"no expiry":              iss.Sign(claims(func(c *auth.Claims) { c.ExpiresAt = nil })),
		"elevated role tampered": tamperRole(t, valid),
	}
	for name, token := range bad {
		t.Run(name, func(t *testing.T) {
			header := bearer(token)
			if name == "not a bearer token" {
				header = http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}
			}
			before := tg.catalog.callCount()
			resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, header)
			requireProblem(t, resp, body, http.StatusUnauthorized)
			require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
			require.Equal(t, before, tg.catalog.callCount(), "a public route refuses a bad token too")
		})
	}

	t.Run("missing on a user route", func(t *testing.T) {
		resp, body := tg.do(t, http.MethodGet, "/api/v1/me", nil, nil)
		p := requireProblem(t, resp, body, http.StatusUnauthorized)
		require.Equal(t, "authentication required", p.Detail)
		require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
		require.Zero(t, tg.identity.callCount())
	})
	t.Run("missing on an admin route", func(t *testing.T) {
		resp, body := tg.do(t, http.MethodDelete, "/api/v1/products/p1", nil, nil)
		requireProblem(t, resp, body, http.StatusUnauthorized)
	})
	t.Run("customer on an admin route", func(t *testing.T) {
		for _, tc := range []struct{ method, path, body string }{
			{http.MethodPost, "/api/v1/products", `{"sku":"K","name":"K","price_cents":1,"currency":"EUR"}`},
			{http.MethodPatch, "/api/v1/products/p1", `{"name":"K"}`},
			{http.MethodDelete, "/api/v1/products/p1", ""},
			{http.MethodGet, "/api/v1/inventory/SKU-1", ""},
			{http.MethodPut, "/api/v1/inventory/SKU-1", `{"on_hand":3}`},
		} {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			resp, respBody := tg.do(t, tc.method, tc.path, body, bearer(valid))
			p := requireProblem(t, resp, respBody, http.StatusForbidden)
			require.Equal(t, "admin role required", p.Detail)
		}
	})
	t.Run("valid token reaches the service with its Authorization", func(t *testing.T) {
		resp, body := tg.do(t, http.MethodGet, "/api/v1/me", nil, bearer(valid))
		require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
		call := tg.identity.lastCall(t)
		require.Equal(t, identityv1.IdentityService_GetMe_FullMethodName, call.method)
		require.Equal(t, []string{"Bearer " + valid}, call.md.Get("authorization"))
	})
	t.Run("admin on an admin route", func(t *testing.T) {
		admin := iss.Token("admin-1", auth.RoleAdmin)
		resp, body := tg.do(t, http.MethodPatch, "/api/v1/products/p1", strings.NewReader(`{"name":"Better kettle"}`), bearer(admin))
		require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
		req := tg.catalog.lastCall(t).req.(*catalogv1.UpdateProductRequest)
		require.Equal(t, "p1", req.GetId())
		require.Equal(t, []string{"name"}, req.GetUpdateMask().GetPaths())
		require.Equal(t, "Better kettle", decodeJSON(t, body)["name"])
	})
}

func TestTokensFromJWKS(t *testing.T) {
	var jwks atomic.Value // http.Handler, set once the issuer exists
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jwks.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tg := startGateway(t, func(c *Config) {
		c.Keys = auth.KeysConfig{JWKSURL: srv.URL + "/.well-known/jwks.json"}
	})
	jwks.Store(tg.issuer.JWKSHandler())

	resp, body := tg.do(t, http.MethodGet, "/api/v1/me", nil, bearer(tg.issuer.Token("u-1", auth.RoleCustomer)))
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	resp, body = tg.do(t, http.MethodGet, "/api/v1/me", nil, bearer(otherIssuerToken(t)))
	requireProblem(t, resp, body, http.StatusUnauthorized)
	require.Eventually(t, func() bool { return tg.admin(t, "/readyz") == "200\nready\n" }, 10*time.Second, 20*time.Millisecond)
}

func TestTokensWhileTheIssuerIsDownAskToRetry(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "identity is restarting", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	tg := startGateway(t, func(c *Config) {
		c.Keys = auth.KeysConfig{JWKSURL: srv.URL + "/.well-known/jwks.json"}
	})

	resp, body := tg.do(t, http.MethodGet, "/api/v1/me", nil, bearer(tg.issuer.Token("u-1", auth.RoleCustomer)))
	p := requireProblem(t, resp, body, http.StatusServiceUnavailable)
	require.Equal(t, auth.ErrKeysUnavailable.Error(), p.Detail)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Zero(t, tg.identity.callCount(), "nothing reached the service")
}

func TestRequestIDIsEchoedAndForwarded(t *testing.T) {
	tg := startGateway(t, nil)

	resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, http.Header{"X-Request-Id": {"client-id_1.2"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	require.Equal(t, "client-id_1.2", resp.Header.Get("X-Request-Id"))
	require.Equal(t, []string{"client-id_1.2"}, tg.catalog.lastCall(t).md.Get("x-request-id"))

	for _, insane := range []string{strings.Repeat("a", 129), "has space", "new\tline", "ünïcode", "semi;colon"} {
		resp, _ := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, http.Header{"X-Request-Id": {insane}})
		id := resp.Header.Get("X-Request-Id")
		require.NotEqual(t, insane, id)
		require.Regexp(t, `^[0-9a-f]{16}-[0-9a-z]+$`, id, "a fresh id replaces %q", insane)
		require.Equal(t, []string{id}, tg.catalog.lastCall(t).md.Get("x-request-id"))
	}

	resp, _ = tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)
	id := resp.Header.Get("X-Request-Id")
	require.NotEmpty(t, id)
	require.Equal(t, []string{id}, tg.catalog.lastCall(t).md.Get("x-request-id"))
	resp, _ = tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)
	require.NotEqual(t, id, resp.Header.Get("X-Request-Id"), "every request gets its own id")
}

func TestHeadersPassThrough(t *testing.T) {
	tg := startGateway(t, nil)
	admin := tg.issuer.Token("admin-1", auth.RoleAdmin)

	h := bearer(admin)
	h.Set("If-Match", `"v3"`)
	h.Set("Idempotency-Key", "key-1")
	h.Set("X-Forwarded-For", "198.51.100.1")
	h.Set("Grpc-Metadata-Role", "admin")
	h.Set("Cookie", "session=1")
	resp, body := tg.do(t, http.MethodPatch, "/api/v1/products/p1", strings.NewReader(`{"name":"K"}`), h)

	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	require.Equal(t, `"v4"`, resp.Header.Get("ETag"))
	md := tg.catalog.lastCall(t).md
	require.Equal(t, []string{`"v3"`}, md.Get("if-match"))
	require.Equal(t, []string{"key-1"}, md.Get("idempotency-key"))
	require.Equal(t, []string{"127.0.0.1"}, md.Get("x-forwarded-for"), "a client's own X-Forwarded-For is not trusted")
	require.Empty(t, md.Get("role"))
	require.Empty(t, md.Get("grpcgateway-cookie"))
	require.Empty(t, md.Get("cookie"))

	t.Run("behind a trusted proxy", func(t *testing.T) {
		tg := startGateway(t, func(c *Config) { c.TrustForwardedFor = true })
		resp, _ := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, http.Header{"X-Forwarded-For": {"10.9.9.9, 198.51.100.7"}})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, []string{"198.51.100.7"}, tg.catalog.lastCall(t).md.Get("x-forwarded-for"))
		require.True(t, logHas(tg.logs.String(), `"client_ip":"198.51.100.7"`))
	})
}

func TestTimeoutBecomesGatewayTimeout(t *testing.T) {
	tg := startGateway(t, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	tg.catalog.setReply(t, func(ctx context.Context, _ string, _ any) (any, error) {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	})
	start := time.Now()

	resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)

	p := requireProblem(t, resp, body, http.StatusGatewayTimeout)
	require.Equal(t, "request timed out", p.Detail)
	require.Less(t, time.Since(start), 5*time.Second)
	deadline := tg.catalog.lastCall(t).deadline
	require.False(t, deadline.IsZero(), "the deadline reaches the service")
	require.WithinDuration(t, start.Add(300*time.Millisecond), deadline, 250*time.Millisecond)
}

func TestTraceContextContinuesUpstream(t *testing.T) {
	tg := startGateway(t, nil)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

	resp, _ := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil,
		http.Header{"Traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}})

	require.Equal(t, http.StatusOK, resp.StatusCode)
	parent := tg.catalog.lastCall(t).md.Get("traceparent")
	require.Len(t, parent, 1)
	require.Contains(t, parent[0], traceID)
}

func TestSpansFormOneTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	tg := startGateway(t, nil)
	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

	resp, _ := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil,
		http.Header{"Traceparent": {"00-" + traceID + "-" + callerSpan + "-01"}})
	require.Equal(t, http.StatusOK, resp.StatusCode)

	var server, client sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range spans.Ended() {
			switch s.SpanKind() {
			case oteltrace.SpanKindServer:
				server = s
			case oteltrace.SpanKindClient:
				client = s
			}
		}
		return server != nil && client != nil
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "GET /api/v1/products/{id}", server.Name())
	require.Equal(t, traceID, server.SpanContext().TraceID().String())
	require.Equal(t, callerSpan, server.Parent().SpanID().String(), "the caller's span is the parent")
	require.Contains(t, server.Attributes(), attribute.Int("http.response.status_code", 200))
	require.Contains(t, server.Attributes(), attribute.String("http.route", "/api/v1/products/{id}"))
	require.Equal(t, server.SpanContext().SpanID(), client.Parent().SpanID(), "the gRPC call is a child of the request")
	parent := tg.catalog.lastCall(t).md.Get("traceparent")
	require.Equal(t, []string{"00-" + traceID + "-" + client.SpanContext().SpanID().String() + "-01"}, parent)
}

func TestCORS(t *testing.T) {
	tg := startGateway(t, func(c *Config) { c.CORSAllowedOrigins = []string{"https://shop.example"} })

	preflight := http.Header{
		"Origin":                         {"https://shop.example"},
		"Access-Control-Request-Method":  {"PATCH"},
		"Access-Control-Request-Headers": {"authorization, if-match"},
	}
	resp, _ := tg.do(t, http.MethodOptions, "/api/v1/products/p1", nil, preflight)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, "https://shop.example", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "PATCH")
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "If-Match")
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Authorization")
	require.Zero(t, tg.catalog.callCount())

	preflight.Set("Origin", "https://evil.example")
	resp, body := tg.do(t, http.MethodOptions, "/api/v1/products/p1", nil, preflight)
	requireProblem(t, resp, body, http.StatusForbidden)
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	resp, _ = tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, http.Header{"Origin": {"https://shop.example"}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "https://shop.example", resp.Header.Get("Access-Control-Allow-Origin"))
	for _, h := range []string{"ETag", "Retry-After", "X-Request-Id"} {
		require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), h)
	}

	resp, _ = tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, http.Header{"Origin": {"https://evil.example"}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
}

func TestRoutingErrorsAreProblems(t *testing.T) {
	tg := startGateway(t, nil)

	resp, body := tg.do(t, http.MethodGet, "/api/v1/nothing-here", nil, nil)
	requireProblem(t, resp, body, http.StatusNotFound)

	resp, body = tg.do(t, http.MethodGet, "/api/v1/auth/login", nil, nil)
	requireProblem(t, resp, body, http.StatusMethodNotAllowed)

	resp, body = tg.do(t, http.MethodPost, "/openapi.json", nil, nil)
	requireProblem(t, resp, body, http.StatusMethodNotAllowed)
}

func TestMethodOverrideIsIgnored(t *testing.T) {
	// The route policy judges the method it sees; the mux must not run
	// the request as another one.
	tg := startGateway(t, nil)
	h := bearer(tg.issuer.Token("admin-1", auth.RoleAdmin))
	h.Set("X-HTTP-Method-Override", http.MethodDelete)
	h.Set("Content-Type", "application/x-www-form-urlencoded")

	resp, body := tg.do(t, http.MethodPost, "/api/v1/products/p1", strings.NewReader(""), h)

	requireProblem(t, resp, body, http.StatusMethodNotAllowed)
	require.Zero(t, tg.catalog.callCount())
}

func TestOpenAPIAndDocs(t *testing.T) {
	tg := startGateway(t, nil)

	resp, body := tg.do(t, http.MethodGet, "/openapi.json", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var doc struct {
		Info struct {
			Title string `json:"title"`
		} `json:"info"`
		SecurityDefinitions map[string]map[string]any `json:"securityDefinitions"`
		Paths               map[string]map[string]struct {
			Responses map[string]any   `json:"responses"`
			Security  []map[string]any `json:"security"`
		} `json:"paths"`
		Definitions map[string]any `json:"definitions"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	require.Equal(t, "mercato API", doc.Info.Title)
	require.Equal(t, "header", doc.SecurityDefinitions["bearer"]["in"])
	for _, path := range []string{"/api/v1/products", "/api/v1/products/{id}", "/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/me"} {
		require.Contains(t, doc.Paths, path)
	}
	require.Contains(t, doc.Paths["/api/v1/products"]["post"].Responses, "201")
	require.NotContains(t, doc.Paths["/api/v1/products"]["post"].Responses, "200")
	require.NotEmpty(t, doc.Paths["/api/v1/products"]["post"].Security)
	require.Empty(t, doc.Paths["/api/v1/products"]["get"].Security)
	require.Contains(t, doc.Paths["/api/v1/products/{id}"]["delete"].Responses, "204")
	require.Contains(t, doc.Paths["/api/v1/auth/register"]["post"].Responses, "201")
	require.Contains(t, doc.Definitions, "v1Product")
	require.Contains(t, doc.Definitions, "Problem")

	resp, body = tg.do(t, http.MethodGet, "/docs", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	page := string(body)
	for _, want := range []string{"mercato API", "CatalogService", "IdentityService", "/api/v1/products/{id}",
		"GetProduct returns one product", "v1Product", "price_cents", "page_size", "admin"} {
		require.Contains(t, page, want)
	}
	require.NotContains(t, page, "<script")
	require.NotRegexp(t, regexp.MustCompile(`(src|href)="https?://`), page, "the page is self-contained")
}

func TestMetricsLabelRoutesByPattern(t *testing.T) {
	tg := startGateway(t, nil)
	for _, id := range []string{"p1", "p2", "p3"} {
		resp, _ := tg.do(t, http.MethodGet, "/api/v1/products/"+id, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	resp, _ := tg.do(t, http.MethodGet, "/api/v1/me", nil, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = tg.do(t, "BREW", "/api/v1/products/p1", nil, nil)
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	metrics := tg.admin(t, "/metrics")

	require.Contains(t, metrics, `http_requests_total{code="200",method="GET",route="/api/v1/products/{id}"} 3`)
	require.Contains(t, metrics, `http_requests_total{code="401",method="GET",route="/api/v1/me"} 1`)
	require.Contains(t, metrics, `http_requests_total{code="405",method="OTHER",route="/api/v1/products/{id}"} 1`)
	require.NotContains(t, metrics, "p1")
	require.NotContains(t, metrics, "BREW", "a client cannot mint label values")
}

func (tg *testGateway) admin(t testing.TB, path string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+tg.gw.AdminAddr()+path, nil)
	require.NoError(t, err)
	resp, err := tg.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return fmt.Sprintf("%d\n%s", resp.StatusCode, b)
}

func TestAccessLogHasOneLinePerRequest(t *testing.T) {
	// The gateway writes access lines itself when given the log writer
	// (as `mercato serve gateway` does), else through the logger; both
	// write the same line.
	for name, direct := range map[string]bool{"written directly": true, "through the logger": false} {
		t.Run(name, func(t *testing.T) {
			tg := startGateway(t, func(c *Config) {
				if !direct {
					c.AccessLog = nil
				}
			})

			// The path decodes to one with a quote in it, which must be escaped.
			resp, _ := tg.do(t, http.MethodGet, "/api/v1/products/p%2242", nil, http.Header{
				"X-Request-Id": {"log-test-1"},
				"Traceparent":  {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			})
			require.Equal(t, http.StatusOK, resp.StatusCode)

			var lines []map[string]any
			require.Eventually(t, func() bool {
				lines = nil
				for _, line := range strings.Split(tg.logs.String(), "\n") {
					if strings.Contains(line, `"request served"`) && strings.Contains(line, "log-test-1") {
						lines = append(lines, decodeJSON(t, []byte(line)))
					}
				}
				return len(lines) > 0
			}, 5*time.Second, 10*time.Millisecond)
			require.Len(t, lines, 1)
			line := lines[0]
			require.Equal(t, "INFO", line["level"])
			require.Equal(t, "request served", line["msg"])
			require.Equal(t, "GET", line["method"])
			require.Equal(t, "/api/v1/products/{id}", line["route"])
			require.Equal(t, `/api/v1/products/p"42`, line["path"])
			require.Equal(t, float64(200), line["status"])
			require.Equal(t, "log-test-1", line["request_id"])
			require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", line["trace_id"])
			require.Equal(t, "127.0.0.1", line["client_ip"])
			require.Equal(t, "gateway", line["service"])
			require.Greater(t, line["bytes"], float64(0))
			require.Contains(t, line, "duration_ms")
			require.Contains(t, line, "time")
			require.NotContains(t, line, "user_id", "anonymous")
		})
	}
}

func TestHealthAndReadiness(t *testing.T) {
	tg := startGateway(t, nil)

	resp, body := tg.do(t, http.MethodGet, "/healthz", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "ok\n", string(body))
	require.Equal(t, "200\nok\n", tg.admin(t, "/healthz"))
	require.Eventually(t, func() bool { return tg.admin(t, "/readyz") == "200\nready\n" }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		return strings.Contains(tg.admin(t, "/readyz?verbose"), "report upstream catalog: ok\n")
	}, 10*time.Second, 20*time.Millisecond)

	// Degrade, don't die: with the catalog gone the gateway stays ready,
	// says so in its verbose report, answers the catalog's routes with a
	// 503 to retry, and every other route keeps working.
	tg.catalog.server.Stop()
	require.Eventually(t, func() bool {
		r := tg.admin(t, "/readyz?verbose")
		return strings.HasPrefix(r, "200\nready\n") && strings.Contains(r, "report upstream catalog: ") &&
			!strings.Contains(r, "report upstream catalog: ok")
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "200\nready\n", tg.admin(t, "/readyz"))
	resp, body = tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, nil)
	p := requireProblem(t, resp, body, http.StatusServiceUnavailable)
	require.NotContains(t, p.Detail, "127.0.0.1", "transport details stay inside")
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	resp, body = tg.do(t, http.MethodGet, "/api/v1/me", nil, bearer(tg.issuer.Token("u-1", auth.RoleCustomer)))
	require.Equal(t, http.StatusOK, resp.StatusCode, "identity's routes still work: %s", body)
}

func TestNotServingUpstreamIsReportedNotFatal(t *testing.T) {
	tg := startGateway(t, nil)
	require.Eventually(t, func() bool { return tg.admin(t, "/readyz") == "200\nready\n" }, 10*time.Second, 20*time.Millisecond)

	tg.identity.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)

	require.Eventually(t, func() bool {
		r := tg.admin(t, "/readyz?verbose")
		return strings.Contains(r, "report upstream identity: ") && !strings.Contains(r, "report upstream identity: ok")
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "200\nready\n", tg.admin(t, "/readyz"), "one upstream down does not take the gateway out")
	resp, body := tg.do(t, http.MethodGet, "/api/v1/me", nil, bearer(tg.issuer.Token("u-1", auth.RoleCustomer)))
	requireProblem(t, resp, body, http.StatusServiceUnavailable)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
}

func TestGracefulShutdownFinishesInFlightRequests(t *testing.T) {
	tg := startGateway(t, nil)
	entered := make(chan struct{})
	release := make(chan struct{})
	tg.catalog.setReply(t, func(context.Context, string, any) (any, error) {
		close(entered)
		<-release
		return nil, nil
	})
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, tg.url+"/api/v1/products/p1", nil)
		resp, err := tg.client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		_ = resp.Body.Close()
		done <- result{code: resp.StatusCode}
	}()
	<-entered

	stopped := make(chan error, 1)
	go func() { stopped <- tg.stop() }()
	require.Eventually(t, func() bool { return strings.Contains(tg.logs.String(), "shutting down") }, 5*time.Second, 5*time.Millisecond)
	close(release)

	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.code, "the in-flight request completes")
	require.NoError(t, <-stopped)
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	upstreams := testUpstreams(func(name string) string { return map[string]string{"catalog": "catalog"}[name] })
	upstreams = append(upstreams, upstreams[1], Upstream{Name: "billing", Target: "billing:9090",
		API: API{Access: []Rule{{Prefix: "billing"}}}})
	err := Config{
		Addr:               "nonsense",
		Upstreams:          upstreams,
		Keys:               auth.KeysConfig{JWKSURL: "ftp://keys"},
		RateLimitRPS:       -1,
		BodyLimitBytes:     -5,
		RequestTimeout:     -time.Second,
		CORSAllowedOrigins: []string{"https://ok.example", "https://bad.example/path"},
	}.Validate()
	require.Error(t, err)
	for _, want := range []string{
		`public listen address "nonsense"`, "admin listen address is empty",
		"identity upstream address is empty", `catalog upstream address "catalog"`, `upstream "catalog" is listed twice`,
		"billing upstream has no routes to register", `access rule prefix "billing" must start with /`, "access rule for billing says no access",
		`JWKS URL "ftp://keys"`, "rate limit must not be negative", "body limit must be positive",
		"request timeout must be positive", `CORS origin "https://bad.example/path"`,
	} {
		require.ErrorContains(t, err, want)
	}

	ok := Config{
		Addr: ":8080", AdminAddr: ":8081", Keys: auth.KeysConfig{JWKSURL: "http://identity:8081/.well-known/jwks.json"},
		Upstreams: testUpstreams(func(name string) string {
			if name == "catalog" {
				return "dns:///catalog:9090"
			}
			return name + ":9090"
		}),
	}.WithDefaults()
	require.NoError(t, ok.Validate())
	require.Equal(t, int64(1<<20), ok.BodyLimitBytes)
	require.Equal(t, 10*time.Second, ok.RequestTimeout)
}

// Secure by default: a route that no access rule covers is refused to
// everyone, admins included, before it reaches its service; paths that are
// no route still answer 404.
func TestRouteWithoutAccessRuleIsClosed(t *testing.T) {
	var logs syncBuffer
	tg := startGatewayLogging(t, func(c *Config) {
		for i := range c.Upstreams {
			if c.Upstreams[i].Name == "catalog" {
				api := c.Upstreams[i].API
				api.Access = nil // the catalog forgot to say who may call it
				c.Upstreams[i].API = api
			}
		}
	}, &logs)
	admin := bearer(tg.issuer.Token("admin-1", auth.RoleAdmin))
	for _, caller := range []http.Header{nil, bearer(tg.issuer.Token("u-1", auth.RoleCustomer)), admin} {
		resp, body := tg.do(t, http.MethodGet, "/api/v1/products/p1", nil, caller)
		p := requireProblem(t, resp, body, http.StatusForbidden)
		require.Contains(t, p.Detail, "no access rule")
	}
	require.Zero(t, tg.catalog.callCount(), "nothing reached the service")
	require.Contains(t, logs.String(), "route has no access rule")

	resp, body := tg.do(t, http.MethodGet, "/api/v1/cart", nil, nil)
	requireProblem(t, resp, body, http.StatusUnauthorized) // the other rules still apply
	resp, body = tg.do(t, http.MethodGet, "/api/v1/nothing/here", nil, admin)
	requireProblem(t, resp, body, http.StatusNotFound)
}
