package gateway

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
)

func jwtTime(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }

func setHeader(ctx context.Context, md metadata.MD) error { return grpc.SetHeader(ctx, md) }

// unsignedToken is an "alg: none" token with the issuer's kid.
func unsignedToken(t testing.TB, kid string, claims auth.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	return s
}

// hmacToken is the classic confusion attack: HS256 keyed with the bytes of
// the public key, which a verifier trusting the token's alg would accept.
func hmacToken(t testing.TB, kid string, pub ed25519.PublicKey, claims auth.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString([]byte(pub))
	require.NoError(t, err)
	return s
}

// withKid re-signs nothing: it swaps the kid in the header, which breaks
// the signature and names a key nobody published.
func withKid(t testing.TB, token, kid string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	header := map[string]any{}
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &header))
	header["kid"] = kid
	b, err := json.Marshal(header)
	require.NoError(t, err)
	parts[0] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// tamper flips one character of the payload.
func tamper(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	p := []byte(parts[1])
	if p[5] == 'A' {
		p[5] = 'B'
	} else {
		p[5] = 'A'
	}
	parts[1] = string(p)
	return strings.Join(parts, ".")
}

// tamperRole rewrites the payload to claim admin, keeping the signature.
func tamperRole(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	claims := map[string]any{}
	require.NoError(t, json.Unmarshal(raw, &claims))
	claims["role"] = auth.RoleAdmin
	b, err := json.Marshal(claims)
	require.NoError(t, err)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// otherIssuerToken is well-formed and signed, by a key the gateway does not know.
func otherIssuerToken(t testing.TB) string {
	return authtest.New(t).Token("u-1", auth.RoleAdmin)
}
