package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const e2eAdminPassword = "e2e-admin-password"

// seededSKUs are some of the demo products an empty catalog is seeded with.
var seededSKUs = []string{"COF-ETH-250", "TEA-SEN-100", "KIT-KTL-GOOSE", "KIT-TPT-CAST", "BOK-TEA-002", "APP-TEE-LOGO"}

// seededCount is how many demo products there are.
const seededCount = 24

// TestPublicAPI drives one running system through the public API as
// docs/api.md describes it. The subtests share the system and run in
// order: browse runs first, on the freshly seeded catalog.
func TestPublicAPI(t *testing.T) {
	s := startSystem(t, options{adminPassword: e2eAdminPassword})
	require.Equal(t, e2eAdminPassword, s.adminPassword, "the banner shows the configured password")

	t.Run("browse the seeded catalog", func(t *testing.T) { testBrowse(t, s) })
	t.Run("accounts and tokens", func(t *testing.T) { testAccounts(t, s) })
	t.Run("admin manages products", func(t *testing.T) { testAdminWrites(t, s) })
	t.Run("bad input is refused and writes nothing", func(t *testing.T) { testBadInput(t, s) })
	t.Run("forged tokens are refused", func(t *testing.T) { testForgedTokens(t, s) })
}

// fingerprints sum products up one line each, enough to tell any change
// (every update moves updated_at) while keeping a failure readable.
func fingerprints(products []product) []string {
	out := make([]string, len(products))
	for i, p := range products {
		out[i] = fmt.Sprintf("%s %s %d %s", p.ID, p.SKU, p.PriceCents, p.UpdatedAt)
	}
	return out
}

func skus(products []product) []string {
	out := make([]string, len(products))
	for i, p := range products {
		out[i] = p.SKU
	}
	return out
}

func testBrowse(t *testing.T, s *system) {
	all := s.listAll(t, nil, 100)
	require.Len(t, all, seededCount, "the empty catalog was seeded once")
	require.Subset(t, skus(all), seededSKUs)
	for _, p := range all {
		require.NotEmpty(t, p.ID)
		require.NotEmpty(t, p.Name)
		require.Positive(t, p.PriceCents)
		require.Equal(t, "USD", p.Currency)
		require.NotEmpty(t, p.Categories)
	}

	// Smaller pages walk the same list, in the same order, each product once.
	var page productPage
	s.do(t, http.MethodGet, "/api/v1/products", "", nil).decode(t, http.StatusOK, &page)
	require.Len(t, page.Products, 20, "page_size defaults to 20")
	require.NotEmpty(t, page.NextPageToken)
	paged := s.listAll(t, nil, 5)
	require.Equal(t, fingerprints(all), fingerprints(paged))

	kettles := s.listAll(t, url.Values{"q": {"kettle"}}, 100)
	require.Contains(t, skus(kettles), "KIT-KTL-GOOSE")
	for _, p := range kettles {
		require.Contains(t, strings.ToLower(p.Name+" "+p.Description), "kettle")
	}

	tea := s.listAll(t, url.Values{"category": {"tea"}}, 3)
	require.Subset(t, skus(tea), []string{"TEA-SEN-100", "KIT-TPT-CAST", "BOK-TEA-002"})
	require.Less(t, len(tea), len(all))
	for _, p := range tea {
		require.Contains(t, p.Categories, "tea", "%s is not in the tea category", p.SKU)
	}
	require.Empty(t, s.listAll(t, url.Values{"category": {"no-such-category"}}, 10))

	var one product
	r := s.do(t, http.MethodGet, "/api/v1/products/"+all[3].ID, "", nil)
	r.decode(t, http.StatusOK, &one)
	require.Equal(t, all[3], one)
	require.NotEmpty(t, r.header.Get("ETag"))

	requireProblem(t, s.do(t, http.MethodGet, "/api/v1/products/"+newUUID(), "", nil), http.StatusNotFound)
}

func testAccounts(t *testing.T, s *system) {
	email := uniqueEmail("ann")
	const password = "correct horse battery"
	registered := s.register(t, email, password, "Ann Example")
	require.NotEmpty(t, registered.ID)
	require.Equal(t, email, registered.Email)
	require.Equal(t, "Ann Example", registered.Name)
	require.Equal(t, "customer", registered.Role)
	require.NotEmpty(t, registered.CreatedAt)

	r := s.do(t, http.MethodPost, "/api/v1/auth/register", "",
		map[string]string{"email": email, "password": "another password", "name": "Impostor"})
	requireProblem(t, r, http.StatusConflict)

	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/auth/login", "",
		map[string]string{"email": email, "password": "wrong password"}), http.StatusUnauthorized)
	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/auth/login", "",
		map[string]string{"email": uniqueEmail("nobody"), "password": password}), http.StatusUnauthorized)

	pair := s.login(t, email, password)
	require.Equal(t, "Bearer", pair.TokenType)
	require.Equal(t, 900, pair.ExpiresIn, "access tokens live 15 minutes")
	require.Len(t, strings.Split(pair.AccessToken, "."), 3)
	require.NotEmpty(t, pair.RefreshToken)

	var me user
	s.do(t, http.MethodGet, "/api/v1/me", pair.AccessToken, nil).decode(t, http.StatusOK, &me)
	require.Equal(t, registered, me)
	requireProblem(t, s.do(t, http.MethodGet, "/api/v1/me", "", nil), http.StatusUnauthorized)

	// The keys that verify the token are published.
	var jwks struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg, Use string } `json:"keys"`
	}
	s.do(t, http.MethodGet, "/.well-known/jwks.json", "", nil).decode(t, http.StatusOK, &jwks)
	require.NotEmpty(t, jwks.Keys)
	header := tokenHeader(t, pair.AccessToken)
	require.Equal(t, "EdDSA", header["alg"])
	found := false
	for _, k := range jwks.Keys {
		require.Equal(t, "OKP", k.Kty)
		require.Equal(t, "Ed25519", k.Crv)
		require.Equal(t, "EdDSA", k.Alg)
		found = found || k.Kid == header["kid"]
	}
	require.True(t, found, "the token's key %v is published", header["kid"])

	// Refresh rotates; reusing a rotated token revokes the whole family.
	var rotated tokenPair
	s.do(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refresh_token": pair.RefreshToken}).
		decode(t, http.StatusOK, &rotated)
	require.NotEqual(t, pair.RefreshToken, rotated.RefreshToken)
	require.NotEmpty(t, rotated.AccessToken)
	s.do(t, http.MethodGet, "/api/v1/me", rotated.AccessToken, nil).decode(t, http.StatusOK, &me)
	require.Equal(t, registered.ID, me.ID)

	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/auth/refresh", "",
		map[string]string{"refresh_token": pair.RefreshToken}), http.StatusUnauthorized)
	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/auth/refresh", "",
		map[string]string{"refresh_token": rotated.RefreshToken}), http.StatusUnauthorized)

	// Logout revokes the refresh token: it no longer works.
	loggedIn := s.login(t, email, password)
	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/auth/logout", "",
		map[string]string{"refresh_token": loggedIn.RefreshToken}), http.StatusUnauthorized)
	r = s.do(t, http.MethodPost, "/api/v1/auth/logout", loggedIn.AccessToken,
		map[string]string{"refresh_token": loggedIn.RefreshToken})
	require.Equal(t, http.StatusNoContent, r.status, "body: %s", r.body)
	require.Empty(t, r.body)
	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/auth/refresh", "",
		map[string]string{"refresh_token": loggedIn.RefreshToken}), http.StatusUnauthorized)
}

func testAdminWrites(t *testing.T, s *system) {
	admin := s.login(t, s.adminEmail, s.adminPassword).AccessToken
	var me user
	s.do(t, http.MethodGet, "/api/v1/me", admin, nil).decode(t, http.StatusOK, &me)
	require.Equal(t, "admin", me.Role)
	before := s.productCount(t)

	input := map[string]any{
		"sku": "E2E-MUG-" + rand.Text()[:6], "name": "Stoneware Mug", "description": "Holds 350 ml.",
		"price_cents": 1800, "currency": "USD", "categories": []string{"kitchen", "coffee"},
		"image_url": "https://example.com/mug.jpg",
	}
	var created product
	r := s.do(t, http.MethodPost, "/api/v1/products", admin, input)
	r.decode(t, http.StatusCreated, &created)
	require.NotEmpty(t, created.ID)
	require.Equal(t, input["sku"], created.SKU)
	require.Equal(t, 1800, created.PriceCents)
	require.Equal(t, []string{"kitchen", "coffee"}, created.Categories)
	etag := r.header.Get("ETag")
	require.NotEmpty(t, etag)
	require.Equal(t, before+1, s.productCount(t))

	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/products", admin, input), http.StatusConflict)

	var got product
	s.do(t, http.MethodGet, "/api/v1/products/"+created.ID, "", nil).decode(t, http.StatusOK, &got)
	require.Equal(t, created, got)

	// A PATCH that names the current version applies; one that names an
	// older version is refused and changes nothing.
	var patched product
	r = s.do(t, http.MethodPatch, "/api/v1/products/"+created.ID, admin, map[string]any{"price_cents": 1650}, "If-Match", etag)
	r.decode(t, http.StatusOK, &patched)
	require.Equal(t, 1650, patched.PriceCents)
	require.Equal(t, created.Name, patched.Name, "fields not named are left alone")
	newETag := r.header.Get("ETag")
	require.NotEmpty(t, newETag)
	require.NotEqual(t, etag, newETag)

	r = s.do(t, http.MethodPatch, "/api/v1/products/"+created.ID, admin, map[string]any{"price_cents": 1}, "If-Match", etag)
	requireProblem(t, r, http.StatusPreconditionFailed)
	s.do(t, http.MethodGet, "/api/v1/products/"+created.ID, "", nil).decode(t, http.StatusOK, &got)
	require.Equal(t, 1650, got.PriceCents)

	// Customers and anonymous callers may not write.
	customer := s.customer(t)
	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/products", customer, map[string]any{
		"sku": "E2E-CUST-1", "name": "Nope", "price_cents": 100, "currency": "USD"}), http.StatusForbidden)
	requireProblem(t, s.do(t, http.MethodPost, "/api/v1/products", "", map[string]any{
		"sku": "E2E-ANON-1", "name": "Nope", "price_cents": 100, "currency": "USD"}), http.StatusUnauthorized)
	requireProblem(t, s.do(t, http.MethodPatch, "/api/v1/products/"+created.ID, customer, map[string]any{"price_cents": 1}), http.StatusForbidden)
	requireProblem(t, s.do(t, http.MethodDelete, "/api/v1/products/"+created.ID, customer, nil), http.StatusForbidden)
	requireProblem(t, s.do(t, http.MethodDelete, "/api/v1/products/"+created.ID, "", nil), http.StatusUnauthorized)
	s.do(t, http.MethodGet, "/api/v1/products/"+created.ID, "", nil).decode(t, http.StatusOK, &got)
	require.Equal(t, 1650, got.PriceCents)
	require.Equal(t, before+1, s.productCount(t))

	r = s.do(t, http.MethodDelete, "/api/v1/products/"+created.ID, admin, nil)
	require.Equal(t, http.StatusNoContent, r.status, "body: %s", r.body)
	requireProblem(t, s.do(t, http.MethodGet, "/api/v1/products/"+created.ID, "", nil), http.StatusNotFound)
	requireProblem(t, s.do(t, http.MethodDelete, "/api/v1/products/"+created.ID, admin, nil), http.StatusNotFound)
	require.Equal(t, before, s.productCount(t))
}

func testBadInput(t *testing.T, s *system) {
	admin := s.login(t, s.adminEmail, s.adminPassword).AccessToken
	all := s.listAll(t, nil, 100)
	require.NotEmpty(t, all)
	existing := all[0]
	var first productPage
	s.do(t, http.MethodGet, "/api/v1/products?page_size=2", "", nil).decode(t, http.StatusOK, &first)
	require.NotEmpty(t, first.NextPageToken)

	valid := func(changes map[string]any) map[string]any {
		p := map[string]any{"sku": "E2E-BAD-" + rand.Text()[:6], "name": "Bad Input", "price_cents": 100, "currency": "USD"}
		for k, v := range changes {
			if v == nil {
				delete(p, k)
			} else {
				p[k] = v
			}
		}
		return p
	}
	oversized := raw(`{"sku":"E2E-BIG","name":"Big","price_cents":100,"currency":"USD","description":"` +
		strings.Repeat("x", 2<<20) + `"}`)

	cases := []struct {
		name   string
		method string
		path   string
		token  string
		body   any
		status int
	}{
		{"malformed JSON", http.MethodPost, "/api/v1/products", admin, raw(`{"sku": "E2E-1", "name":`), http.StatusBadRequest},
		{"not JSON", http.MethodPost, "/api/v1/products", admin, raw(`sku=E2E-1&name=x`), http.StatusBadRequest},
		{"price as a word", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"price_cents": "a hundred"}), http.StatusBadRequest},
		{"categories as a string", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"categories": "tea"}), http.StatusBadRequest},
		{"name as a number", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"name": 42}), http.StatusBadRequest},
		{"empty object", http.MethodPost, "/api/v1/products", admin, map[string]any{}, http.StatusBadRequest},
		{"missing sku", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"sku": nil}), http.StatusBadRequest},
		{"missing name", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"name": nil}), http.StatusBadRequest},
		{"missing price", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"price_cents": nil}), http.StatusBadRequest},
		{"negative price", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"price_cents": -100}), http.StatusBadRequest},
		{"float price", http.MethodPost, "/api/v1/products", admin, raw(`{"sku":"E2E-FLOAT","name":"Float","price_cents":12.5,"currency":"USD"}`), http.StatusBadRequest},
		{"price beyond int32", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"price_cents": int64(1) << 40}), http.StatusBadRequest},
		{"unknown currency", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"currency": "XYZ"}), http.StatusBadRequest},
		{"script in image url", http.MethodPost, "/api/v1/products", admin, valid(map[string]any{"image_url": "javascript:alert(1)"}), http.StatusBadRequest},
		{"oversized body", http.MethodPost, "/api/v1/products", admin, oversized, http.StatusRequestEntityTooLarge},
		{"negative price patch", http.MethodPatch, "/api/v1/products/" + existing.ID, admin, map[string]any{"price_cents": -1}, http.StatusBadRequest},
		{"float price patch", http.MethodPatch, "/api/v1/products/" + existing.ID, admin, raw(`{"price_cents":9.99}`), http.StatusBadRequest},
		{"empty patch", http.MethodPatch, "/api/v1/products/" + existing.ID, admin, map[string]any{}, http.StatusBadRequest},
		{"patch unknown id", http.MethodPatch, "/api/v1/products/" + newUUID(), admin, map[string]any{"price_cents": 100}, http.StatusNotFound},
		{"delete unknown id", http.MethodDelete, "/api/v1/products/" + newUUID(), admin, nil, http.StatusNotFound},
		{"get unknown id", http.MethodGet, "/api/v1/products/" + newUUID(), "", nil, http.StatusNotFound},
		{"get id that is not an id", http.MethodGet, "/api/v1/products/not-a-product", "", nil, http.StatusNotFound},
		{"page_size 101", http.MethodGet, "/api/v1/products?page_size=101", "", nil, http.StatusBadRequest},
		{"negative page_size", http.MethodGet, "/api/v1/products?page_size=-1", "", nil, http.StatusBadRequest},
		{"page_size not a number", http.MethodGet, "/api/v1/products?page_size=ten", "", nil, http.StatusBadRequest},
		{"made-up page_token", http.MethodGet, "/api/v1/products?page_token=abc", "", nil, http.StatusBadRequest},
		{"tampered page_token", http.MethodGet, "/api/v1/products?page_token=" + url.QueryEscape(tamper(first.NextPageToken)), "", nil, http.StatusBadRequest},
		{"page_token with another query", http.MethodGet, "/api/v1/products?q=tea&page_token=" + url.QueryEscape(first.NextPageToken), "", nil, http.StatusBadRequest},
		{"register malformed JSON", http.MethodPost, "/api/v1/auth/register", "", raw(`{"email":`), http.StatusBadRequest},
		{"register without password", http.MethodPost, "/api/v1/auth/register", "", map[string]any{"email": "nopass@example.com", "name": "No Pass"}, http.StatusBadRequest},
		{"register bad email", http.MethodPost, "/api/v1/auth/register", "", map[string]any{"email": "not-an-email", "password": "long enough password", "name": "X"}, http.StatusBadRequest},
		{"register short password", http.MethodPost, "/api/v1/auth/register", "", map[string]any{"email": "short@example.com", "password": "short", "name": "X"}, http.StatusBadRequest},
		{"register wrong types", http.MethodPost, "/api/v1/auth/register", "", raw(`{"email":["a@example.com"],"password":1,"name":true}`), http.StatusBadRequest},
		{"login malformed JSON", http.MethodPost, "/api/v1/auth/login", "", raw(`{"email":"a@example.com","password"`), http.StatusBadRequest},
		{"refresh with a made-up token", http.MethodPost, "/api/v1/auth/refresh", "", map[string]any{"refresh_token": "made-up"}, http.StatusUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			requireProblem(t, s.do(t, tc.method, tc.path, tc.token, tc.body), tc.status)
		})
	}

	// Nothing above wrote anything.
	require.Equal(t, fingerprints(all), fingerprints(s.listAll(t, nil, 100)), "products are unchanged")
	for _, email := range []string{"nopass@example.com", "not-an-email", "short@example.com"} {
		requireProblem(t, s.do(t, http.MethodPost, "/api/v1/auth/login", "",
			map[string]string{"email": email, "password": "long enough password"}), http.StatusUnauthorized)
	}

	// Search text is data, never SQL.
	for _, q := range []string{
		`' OR 1=1 --`,
		`'; DROP TABLE products; --`,
		`%`,
		`_`,
		`" OR ""="`,
		`tea' UNION SELECT id, sku FROM products --`,
	} {
		t.Run("search "+q, func(t *testing.T) {
			var page productPage
			s.do(t, http.MethodGet, "/api/v1/products?q="+url.QueryEscape(q), "", nil).decode(t, http.StatusOK, &page)
			require.Empty(t, page.Products, "q=%q matched products", q)
		})
	}
	require.Equal(t, fingerprints(all), fingerprints(s.listAll(t, nil, 100)), "products are intact")
}

// tamper changes one character in the middle of a token.
func tamper(token string) string {
	b := []byte(token)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// tokenHeader decodes a JWT's header.
func tokenHeader(t *testing.T, token string) map[string]any {
	t.Helper()
	part, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(part)
	require.NoError(t, err)
	var h map[string]any
	require.NoError(t, json.Unmarshal(b, &h))
	return h
}
