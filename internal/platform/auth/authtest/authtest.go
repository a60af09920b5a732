// Package authtest issues access tokens for tests: an Ed25519 signing key,
// tokens shaped like identity's (EdDSA, kid header, iss/aud/exp/role), and
// the matching public key as an auth.KeySource or a JWKS endpoint.
package authtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// Issuer signs test tokens with one Ed25519 key. It is safe for concurrent use.
type Issuer struct {
	t    testing.TB
	kid  string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// New returns an issuer with a fresh key.
func New(t testing.TB) *Issuer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate test signing key: %v", err)
	}
	return &Issuer{t: t, kid: "test-" + rand.Text()[:8], priv: priv, pub: pub}
}

// KeyID is the kid of the issuer's key.
func (i *Issuer) KeyID() string { return i.kid }

// Token returns a valid 15-minute access token for userID with role
// (auth.RoleCustomer or auth.RoleAdmin), issued by auth.DefaultIssuer for
// auth.DefaultAudience.
func (i *Issuer) Token(userID, role string) string {
	now := time.Now()
	return i.Sign(auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID,
			Issuer:    auth.DefaultIssuer,
			Audience:  jwt.ClaimStrings{auth.DefaultAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(15 * time.Minute)),
		},
		Role:  role,
		Email: userID + "@example.test",
	})
}

// Sign returns a token with exactly these claims, for tests of expired,
// misaddressed or otherwise odd tokens.
func (i *Issuer) Sign(claims auth.Claims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = i.kid
	s, err := tok.SignedString(i.priv)
	if err != nil {
		i.t.Fatalf("sign test token: %v", err)
	}
	return s
}

// KeySource returns the issuer's public key as an auth.KeySource.
func (i *Issuer) KeySource() auth.KeySource { return keySource{i} }

type keySource struct{ i *Issuer }

func (k keySource) Key(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if kid != k.i.kid {
		return nil, fmt.Errorf("%w: %q", auth.ErrUnknownKey, kid)
	}
	return k.i.pub, nil
}

// JWKSHandler serves the issuer's public key as a JWKS document, as
// identity does at /.well-known/jwks.json.
func (i *Issuer) JWKSHandler() http.Handler {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: i.pub, KeyID: i.kid, Algorithm: auth.Algorithm, Use: "sig",
	}}}
	body, err := json.Marshal(set)
	if err != nil {
		i.t.Fatalf("encode test JWKS: %v", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}
