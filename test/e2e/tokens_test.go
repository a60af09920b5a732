package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
)

// tokenClaims are the claims of a mercato access token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Role  string `json:"role"`
	Email string `json:"email,omitempty"`
}

// identitySigningKey reads the private key with kid from identity's own
// database. A black-box test cannot otherwise obtain a token that differs
// from a genuine one in a single claim (expiry, audience, issuer), and
// only such a token shows that each claim is checked, not merely the
// signature.
func identitySigningKey(t *testing.T, s *system, kid string) ed25519.PrivateKey {
	t.Helper()
	d, err := db.Open(t.Context(), db.Config{URL: filepath.Join(s.dataDir, "identity.db"), MaxOpenConns: 1})
	require.NoError(t, err)
	defer d.Close()
	var seed []byte
	require.NoError(t, d.QueryRowContext(t.Context(), `SELECT private_key FROM signing_keys WHERE kid = $1`, kid).Scan(&seed))
	require.Len(t, seed, ed25519.SeedSize)
	return ed25519.NewKeyFromSeed(seed)
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims tokenClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func testForgedTokens(t *testing.T, s *system) {
	adminPair := s.login(t, s.adminEmail, s.adminPassword)
	customer := s.customer(t)
	kid, _ := tokenHeader(t, adminPair.AccessToken)["kid"].(string)
	require.NotEmpty(t, kid)
	key := identitySigningKey(t, s, kid)

	var admin user
	s.do(t, http.MethodGet, "/api/v1/me", adminPair.AccessToken, nil).decode(t, http.StatusOK, &admin)

	// Claims of a genuine admin token; each case breaks one thing.
	good := func() tokenClaims {
		now := time.Now()
		return tokenClaims{
			RegisteredClaims: jwt.RegisteredClaims{
				Issuer:    "mercato-identity",
				Subject:   admin.ID,
				Audience:  jwt.ClaimStrings{"mercato"},
				ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)),
				IssuedAt:  jwt.NewNumericDate(now),
				ID:        rand.Text(),
			},
			Role:  "admin",
			Email: admin.Email,
		}
	}
	with := func(change func(*tokenClaims)) tokenClaims {
		c := good()
		change(&c)
		return c
	}

	// The harness itself must be right: a token it signs with the real key
	// and good claims is accepted, so each refusal below is for its one flaw.
	control := sign(t, jwt.SigningMethodEdDSA, key, kid, good())
	var me user
	s.do(t, http.MethodGet, "/api/v1/me", control, nil).decode(t, http.StatusOK, &me)
	require.Equal(t, admin.ID, me.ID)

	jwks := s.do(t, http.MethodGet, "/.well-known/jwks.json", "", nil)
	var set struct {
		Keys []struct{ X, Kid string } `json:"keys"`
	}
	jwks.decode(t, http.StatusOK, &set)
	var publicX string
	for _, k := range set.Keys {
		if k.Kid == kid {
			publicX = k.X
		}
	}
	require.NotEmpty(t, publicX)
	publicKey, err := base64.RawURLEncoding.DecodeString(publicX)
	require.NoError(t, err)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	cases := map[string]string{
		"alg none":                              sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, good()),
		"HS256 keyed with the public key":       sign(t, jwt.SigningMethodHS256, publicKey, kid, good()),
		"HS256 keyed with the published x":      sign(t, jwt.SigningMethodHS256, []byte(publicX), kid, good()),
		"HS256 keyed with the JWKS document":    sign(t, jwt.SigningMethodHS256, jwks.body, kid, good()),
		"expired":                               sign(t, jwt.SigningMethodEdDSA, key, kid, with(func(c *tokenClaims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) })),
		"without expiry":                        sign(t, jwt.SigningMethodEdDSA, key, kid, with(func(c *tokenClaims) { c.ExpiresAt = nil })),
		"wrong audience":                        sign(t, jwt.SigningMethodEdDSA, key, kid, with(func(c *tokenClaims) { c.Audience = jwt.ClaimStrings{"someone-else"} })),
		"wrong issuer":                          sign(t, jwt.SigningMethodEdDSA, key, kid, with(func(c *tokenClaims) { c.Issuer = "evil-identity" })),
		"unknown kid":                           sign(t, jwt.SigningMethodEdDSA, key, "no-such-kid", good()),
		"no kid":                                sign(t, jwt.SigningMethodEdDSA, key, "", good()),
		"signed by another key":                 sign(t, jwt.SigningMethodEdDSA, otherKey, kid, good()),
		"unknown role":                          sign(t, jwt.SigningMethodEdDSA, key, kid, with(func(c *tokenClaims) { c.Role = "superuser" })),
		"customer token promoted to admin":      promote(t, customer),
		"signature cut off":                     strings.Join(strings.Split(adminPair.AccessToken, ".")[:2], ".") + ".",
		"garbage":                               "not-a-token",
		"refresh token used as an access token": adminPair.RefreshToken,
	}
	before := s.listAll(t, nil, 100)
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			requireProblem(t, s.do(t, http.MethodGet, "/api/v1/me", token, nil), http.StatusUnauthorized)
			requireProblem(t, s.do(t, http.MethodPost, "/api/v1/products", token, map[string]any{
				"sku": "E2E-FORGED-" + rand.Text()[:6], "name": "Forged", "price_cents": 1, "currency": "USD",
			}), http.StatusUnauthorized)
			requireProblem(t, s.do(t, http.MethodDelete, "/api/v1/products/"+before[0].ID, token, nil), http.StatusUnauthorized)
			// A bad token is refused even where none is needed: a caller
			// who sent one expects to be treated as who it claims.
			requireProblem(t, s.do(t, http.MethodGet, "/api/v1/products", token, nil), http.StatusUnauthorized)
		})
	}
	require.Equal(t, fingerprints(before), fingerprints(s.listAll(t, nil, 100)), "no forged token wrote anything")
}

// promote rewrites a customer token's payload to claim the admin role,
// keeping the original signature.
func promote(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(payload, &claims))
	require.Equal(t, "customer", claims["role"])
	claims["role"] = "admin"
	payload, err = json.Marshal(claims)
	require.NoError(t, err)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}
