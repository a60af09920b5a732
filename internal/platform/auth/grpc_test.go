package auth

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/mercato-dev/mercato/internal/platform/server"
)

const (
	publicMethod  = "/shop.v1.Shop/ListThings"
	privateMethod = "/shop.v1.Shop/DeleteThing"
)

// callResult is what the handler behind the interceptor saw.
type callResult struct {
	called    bool
	principal Principal
	hasUser   bool
}

// call runs a unary call for method through the interceptor, with the
// given authorization header values, the way the server chain would:
// the error is mapped to a gRPC status.
func call(t *testing.T, v *Verifier, method string, authorization ...string) (callResult, error) {
	t.Helper()
	ctx := t.Context()
	if len(authorization) > 0 {
		md := metadata.MD{}
		for _, a := range authorization {
			md.Append("authorization", a)
		}
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	var got callResult
	handler := func(ctx context.Context, _ any) (any, error) {
		got.called = true
		got.principal, got.hasUser = FromContext(ctx)
		return "ok", nil
	}
	logger := slog.New(slog.DiscardHandler)
	interceptor := UnaryServerInterceptor(v, logger, publicMethod)
	mapped := server.ErrorMapping(logger)
	_, err := mapped(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, req any) (any, error) {
		return interceptor(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, handler)
	})
	return got, err
}

func TestInterceptor(t *testing.T) {
	k := newTestKey(t, "k1")
	v := NewVerifier(staticKeys{k.kid: k.pub}, DefaultIssuer, DefaultAudience)
	good := sign(t, k, validClaims())
	expiredClaims := validClaims()
	expiredClaims.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	expired := sign(t, k, expiredClaims)

	t.Run("anonymous call to a non-public method is refused", func(t *testing.T) {
		got, err := call(t, v, privateMethod)
		require.Equal(t, codes.Unauthenticated, server.Status(err).Code())
		require.Equal(t, "authentication required", server.Status(err).Message())
		require.False(t, got.called)
	})
	t.Run("non-bearer authorization counts as anonymous", func(t *testing.T) {
		got, err := call(t, v, privateMethod, "Basic dXNlcjpwYXNz")
		require.Equal(t, codes.Unauthenticated, server.Status(err).Code())
		require.False(t, got.called)
	})
	t.Run("anonymous call to a public method is allowed", func(t *testing.T) {
		got, err := call(t, v, publicMethod)
		require.NoError(t, err)
		require.True(t, got.called)
		require.False(t, got.hasUser)
	})
	t.Run("health checks are allowed anonymously", func(t *testing.T) {
		got, err := call(t, v, "/grpc.health.v1.Health/Check")
		require.NoError(t, err)
		require.True(t, got.called)
	})
	t.Run("valid token gives the handler a principal", func(t *testing.T) {
		got, err := call(t, v, privateMethod, "Bearer "+good)
		require.NoError(t, err)
		require.True(t, got.hasUser)
		require.Equal(t, Principal{UserID: "user-1", Email: "ann@example.com", Role: RoleCustomer, Token: good}, got.principal)
	})
	t.Run("invalid token is refused on a non-public method", func(t *testing.T) {
		for _, token := range []string{expired, "garbage", sign(t, newTestKey(t, "k1"), validClaims())} {
			got, err := call(t, v, privateMethod, "Bearer "+token)
			require.Equal(t, codes.Unauthenticated, server.Status(err).Code())
			require.Equal(t, "invalid or expired access token", server.Status(err).Message())
			require.False(t, got.called)
		}
	})
	t.Run("invalid token on a public method runs the call anonymously", func(t *testing.T) {
		got, err := call(t, v, publicMethod, "Bearer "+expired)
		require.NoError(t, err)
		require.True(t, got.called)
		require.False(t, got.hasUser, "an invalid token never yields a principal")
	})
}

// unavailableKeys is a key source whose issuer cannot be reached.
type unavailableKeys struct{}

func (unavailableKeys) Key(context.Context, string) (ed25519.PublicKey, error) {
	return nil, fmt.Errorf("%w: connection refused", ErrKeysUnavailable)
}

func TestInterceptorWithoutSigningKeysAsksToRetry(t *testing.T) {
	k := newTestKey(t, "k1")
	v := NewVerifier(unavailableKeys{}, DefaultIssuer, DefaultAudience)
	got, err := call(t, v, privateMethod, "Bearer "+sign(t, k, validClaims()))
	require.Equal(t, codes.Unavailable, server.Status(err).Code(), "the token may be good: retry, do not sign in again")
	require.Equal(t, ErrKeysUnavailable.Error(), server.Status(err).Message())
	require.False(t, got.called)

	got, err = call(t, v, publicMethod, "Bearer "+sign(t, k, validClaims()))
	require.NoError(t, err, "a public method still runs, anonymously")
	require.False(t, got.hasUser)
}

func TestRequireHelpers(t *testing.T) {
	ctx := t.Context()
	_, err := RequireUser(ctx)
	require.ErrorIs(t, err, ErrMissingToken)
	_, err = RequireAdmin(ctx)
	require.ErrorIs(t, err, ErrMissingToken)

	customer := WithPrincipal(ctx, Principal{UserID: "u1", Role: RoleCustomer})
	p, err := RequireUser(customer)
	require.NoError(t, err)
	require.Equal(t, "u1", p.UserID)
	_, err = RequireAdmin(customer)
	require.ErrorIs(t, err, ErrForbidden)
	require.Equal(t, codes.PermissionDenied, server.Status(err).Code())

	admin := WithPrincipal(ctx, Principal{UserID: "a1", Role: RoleAdmin})
	p, err = RequireAdmin(admin)
	require.NoError(t, err)
	require.Equal(t, "a1", p.UserID)
}

func TestOutgoingTokenReachesTheInterceptor(t *testing.T) {
	k := newTestKey(t, "k1")
	v := NewVerifier(staticKeys{k.kid: k.pub}, DefaultIssuer, DefaultAudience)
	token := sign(t, k, validClaims())

	out := OutgoingToken(t.Context(), token)
	md, ok := metadata.FromOutgoingContext(out)
	require.True(t, ok)
	got, err := call(t, v, privateMethod, md.Get("authorization")...)

	require.NoError(t, err)
	require.Equal(t, "user-1", got.principal.UserID)
}
