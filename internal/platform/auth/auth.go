// Package auth verifies access tokens (EdDSA JWTs whose keys come from a
// JWKS URL) and carries the authenticated principal through a request. It
// is used by the gateway (HTTP middleware) and by every service (gRPC
// interceptor), so a call that goes around the gateway is checked too.
package auth

import (
	"context"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

// The roles a principal can have.
const (
	RoleCustomer = "customer"
	RoleAdmin    = "admin"
	// RoleService is held by mercato's own services calling each other
	// (client-credentials tokens issued by identity), never by a person.
	RoleService = "service"
)

// Default token parameters shared by the issuer (identity) and verifiers.
const (
	DefaultIssuer   = "mercato-identity"
	DefaultAudience = "mercato"
	// Algorithm is the only signing algorithm accepted; it is pinned so a
	// token cannot pick its own (alg: none, HS256 keyed with a public key).
	Algorithm = "EdDSA"
)

// Claims are the claims of a mercato access token.
type Claims struct {
	jwt.RegisteredClaims
	Role  string `json:"role"`
	Email string `json:"email,omitempty"`
}

// Principal is the authenticated caller.
type Principal struct {
	UserID string
	Email  string
	Role   string
	// Token is the raw access token, forwarded on calls made on the
	// caller's behalf.
	Token string
}

// IsAdmin reports whether the principal has the admin role.
func (p Principal) IsAdmin() bool { return p.Role == RoleAdmin }

// IsService reports whether the principal is one of mercato's services.
func (p Principal) IsService() bool { return p.Role == RoleService }

// Errors returned by verification and the helpers below.
var (
	ErrMissingToken = apperr.New(apperr.Unauthenticated, "authentication required")
	ErrInvalidToken = apperr.New(apperr.Unauthenticated, "invalid or expired access token")
	ErrForbidden    = apperr.New(apperr.Forbidden, "admin role required")
	ErrNotService   = apperr.New(apperr.Forbidden, "only mercato services may call this")
	// ErrKeysUnavailable means the token could not be checked because the
	// signing keys could not be fetched: the token may well be good, so
	// the caller should retry, not sign in again.
	ErrKeysUnavailable = apperr.New(apperr.Unavailable, "token signing keys are unavailable, retry shortly")
)

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the authenticated principal, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// RequireUser returns the principal or ErrMissingToken.
func RequireUser(ctx context.Context) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return Principal{}, ErrMissingToken
	}
	return p, nil
}

// RequireAdmin returns the principal if it is an admin, ErrMissingToken when
// anonymous and ErrForbidden otherwise.
func RequireAdmin(ctx context.Context) (Principal, error) {
	p, err := RequireUser(ctx)
	if err != nil {
		return Principal{}, err
	}
	if !p.IsAdmin() {
		return Principal{}, ErrForbidden
	}
	return p, nil
}

// BearerToken extracts the token from an Authorization header value.
func BearerToken(header string) (string, bool) {
	const prefix = "bearer "
	if len(header) <= len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(header[len(prefix):]), true
}

// RequireService returns the principal if it is a mercato service or an
// admin, ErrMissingToken when anonymous and ErrNotService otherwise.
func RequireService(ctx context.Context) (Principal, error) {
	p, err := RequireUser(ctx)
	if err != nil {
		return Principal{}, err
	}
	if !p.IsService() && !p.IsAdmin() {
		return Principal{}, ErrNotService
	}
	return p, nil
}
