package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// KeySource finds the public key for a key id.
type KeySource interface {
	// Key returns the Ed25519 public key with the given id, or an error
	// when it is unknown.
	Key(ctx context.Context, kid string) (ed25519.PublicKey, error)
}

// Verifier checks access tokens. It is safe for concurrent use.
//
// A checkout presents the same token to several services, several times
// each, within a second or two, and an Ed25519 check costs ~50 µs; so a
// verifier remembers tokens it accepted, keyed by the whole token string
// (any change to a token is a cache miss and a full check), until the
// token's expiry or for at most verifiedTTL, and only while the signing
// key is still published (a cheap lookup). Failures are never cached.
type Verifier struct {
	keys     KeySource
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time

	mu       sync.RWMutex
	verified map[string]verifiedToken
}

type verifiedToken struct {
	principal Principal
	kid       string
	until     time.Time
}

const (
	// verifiedTTL bounds how long an accepted token is trusted without a
	// fresh signature check.
	verifiedTTL = time.Minute
	// maxVerified bounds the cache; when full it is emptied, which only
	// costs a few signature checks.
	maxVerified = 4096
)

// NewVerifier returns a verifier that accepts only EdDSA tokens signed by a
// key from keys, issued by issuer for audience, with exp set and not past.
func NewVerifier(keys KeySource, issuer, audience string) *Verifier {
	return &Verifier{
		keys: keys, issuer: issuer, audience: audience, leeway: 5 * time.Second,
		now: time.Now, verified: make(map[string]verifiedToken),
	}
}

// Verify parses and checks token. Every failure is ErrInvalidToken (wrapped
// with the reason, for logs), except ErrKeysUnavailable: the keys to check
// it against could not be fetched.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	now := v.now()
	v.mu.RLock()
	hit, ok := v.verified[token]
	v.mu.RUnlock()
	if ok && now.Before(hit.until) {
		if _, err := v.keys.Key(ctx, hit.kid); err == nil {
			return hit.principal, nil
		}
	}
	p, kid, exp, err := v.verify(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	until := now.Add(verifiedTTL)
	if exp.Before(until) {
		until = exp
	}
	v.mu.Lock()
	if len(v.verified) >= maxVerified {
		clear(v.verified)
	}
	v.verified[token] = verifiedToken{principal: p, kid: kid, until: until}
	v.mu.Unlock()
	return p, nil
}

// verify does the full check and returns the token's key id and expiry.
func (v *Verifier) verify(ctx context.Context, token string) (Principal, string, time.Time, error) {
	var claims Claims
	parsed, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		return v.keys.Key(ctx, kid)
	},
		jwt.WithValidMethods([]string{Algorithm}),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
	)
	if errors.Is(err, ErrKeysUnavailable) {
		return Principal{}, "", time.Time{}, err
	}
	if err != nil || !parsed.Valid {
		return Principal{}, "", time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if claims.Subject == "" || (claims.Role != RoleCustomer && claims.Role != RoleAdmin && claims.Role != RoleService) {
		return Principal{}, "", time.Time{}, fmt.Errorf("%w: missing subject or unknown role", ErrInvalidToken)
	}
	p := Principal{UserID: claims.Subject, Email: claims.Email, Role: claims.Role, Token: token}
	kid, _ := parsed.Header["kid"].(string)
	return p, kid, claims.ExpiresAt.Time, nil
}
