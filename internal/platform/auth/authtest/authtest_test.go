package authtest_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
)

func TestTokensVerify(t *testing.T) {
	issuer := authtest.New(t)
	jwks := httptest.NewServer(issuer.JWKSHandler())
	t.Cleanup(jwks.Close)

	sources := map[string]auth.KeySource{
		"key source": issuer.KeySource(),
		"jwks":       auth.NewJWKSCache(jwks.URL, nil),
	}
	for name, keys := range sources {
		t.Run(name, func(t *testing.T) {
			v := auth.NewVerifier(keys, auth.DefaultIssuer, auth.DefaultAudience)
			p, err := v.Verify(t.Context(), issuer.Token("user-7", auth.RoleAdmin))
			require.NoError(t, err)
			require.Equal(t, "user-7", p.UserID)
			require.True(t, p.IsAdmin())

			expired := issuer.Sign(auth.Claims{
				RegisteredClaims: jwt.RegisteredClaims{
					Subject: "user-7", Issuer: auth.DefaultIssuer, Audience: jwt.ClaimStrings{auth.DefaultAudience},
					ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour)),
				},
				Role: auth.RoleCustomer,
			})
			_, err = v.Verify(t.Context(), expired)
			require.ErrorIs(t, err, auth.ErrInvalidToken)

			_, err = v.Verify(t.Context(), authtest.New(t).Token("user-7", auth.RoleAdmin))
			require.ErrorIs(t, err, auth.ErrInvalidToken, "a token from another issuer's key")
		})
	}
}
